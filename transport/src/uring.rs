//! The io_uring backend: sockets set up by `std::net`, every send and
//! receive through a ring of the connection's own. A send is one `writev`
//! of the message's parts, linked to a timeout. A receive is, by default,
//! one `recv` straight into the message buffer, linked to a timeout, so a
//! waiting end sleeps in the kernel until bytes come or the timeout passes
//! (no polling). [`Uring::probe`] checks at start-up that the kernel allows
//! io_uring and has the operations (many container runtimes block it); where
//! it does not, [`crate::Auto`] uses the portable backend.
//!
//! [`Uring::multishot`] (`transport = "io_uring_multishot"`) receives with a
//! *multishot* `recv` and a provided-buffer ring instead (kernel 6.0 and
//! later): one request, armed at the first receive, keeps posting a
//! completion per chunk of bytes into buffers the kernel takes from the
//! connection's ring of [`BUFS`] buffers of 256 KiB; the bytes are copied
//! into the message buffer and the buffer goes back into the ring;
//! completions that came while the thread was busy are read from the
//! completion queue without a system call, and a waiting end sleeps in
//! `io_uring_enter` with a timeout. It is not the default: the copy out of
//! the provided buffers costs about what the saved submissions win (on the
//! development VM, 64 B replication measures from 10 % slower to 14 %
//! faster by the run, a resync the same; `ckpt bench` has the row), and
//! each receiving connection holds 2 MiB of buffers.
//!
//! A send, and a single-shot receive, is waited for before the call
//! returns, so the buffers the kernel reads or writes (the parts, the
//! receive buffer, the timeout) outlive it. The one operation left in
//! flight between calls is the multishot receive, whose buffers the
//! connection owns: dropping the connection cancels it and waits for its
//! last completion before the buffers are freed (if it never comes, they
//! are never freed).

#![allow(unsafe_code)]

use std::alloc::Layout;
use std::collections::VecDeque;
use std::io;
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::time::{Duration, Instant};

use io_uring::{cqueue, opcode, squeue, types, IoUring, Probe};

use crate::{Backend, Connection, MessageBuf};

/// The io_uring backend (after a successful [`Uring::probe`]).
#[derive(Debug, Clone, Copy)]
pub struct Uring {
    /// The kernel has provided-buffer rings: receives are multishot.
    multishot: bool,
}

/// A connection whose I/O goes through its own ring.
pub struct UringConn {
    stream: TcpStream,
    ring: IoUring,
    max_message: usize,
    rx: MessageBuf,
    /// How this connection receives.
    mode: RecvMode,
    /// The provided buffers of a multishot receive (made at the first one).
    bufs: Option<BufRing>,
    /// A multishot receive is in flight.
    armed: bool,
    /// Completions of the multishot receive that a send's wait collected,
    /// in order (at most [`BUFS`] + 1: one per buffer, and the last).
    early: VecDeque<(i32, u32)>,
    /// A provided buffer whose bytes are not all in `rx` yet: its id, how
    /// far it was copied, its length. Later completions wait for it.
    pending: Option<(u16, usize, usize)>,
}

/// How a connection receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecvMode {
    /// A multishot `recv` with provided buffers.
    Multishot,
    /// One `recv` into the message buffer, linked to a timeout, per receive.
    Single,
}

/// Buffers in a connection's provided-buffer ring (a power of two).
pub const BUFS: u16 = 8;
/// Bytes per provided buffer.
const BUF_BYTES: usize = 256 * 1024;
/// The provided-buffer group of a connection's ring (one per ring).
const BGID: u16 = 0;
/// Completion queue entries per ring: a send's two, and one per provided
/// buffer with the multishot receive's last, with room to spare.
const CQ_ENTRIES: u32 = 4 * BUFS as u32;

/// A listener whose connections are [`UringConn`]s.
pub type UringListen = crate::SocketListener<UringConn>;

/// Submission queue entries per connection ring.
const RING_ENTRIES: u32 = 8;
/// Parts of one send at most per `writev` (the rest follow).
const IOV_MAX: usize = 64;

const RECV: u64 = 1;
const TIMEOUT: u64 = 2;
const WRITE: u64 = 3;
const RECV_MULTI: u64 = 4;
const CANCEL: u64 = 5;

impl Uring {
    /// Checks that this kernel lets this process use io_uring with the
    /// operations this backend needs; `Err` says why not.
    pub fn probe() -> Result<Uring, String> {
        let ring = IoUring::new(RING_ENTRIES).map_err(|e| format!("io_uring_setup: {e}"))?;
        let mut probe = Probe::new();
        ring.submitter()
            .register_probe(&mut probe)
            .map_err(|e| format!("io_uring probe: {e}"))?;
        for (code, name) in [
            (opcode::Recv::CODE, "RECV"),
            (opcode::Writev::CODE, "WRITEV"),
            (opcode::LinkTimeout::CODE, "LINK_TIMEOUT"),
        ] {
            if !probe.is_supported(code) {
                return Err(format!("io_uring lacks {name}"));
            }
        }
        Ok(Uring { multishot: false })
    }

    /// The same backend receiving with multishot `recv`s into provided
    /// buffers ([`crate::Choice::IoUringMultishot`]); `Err` says why this
    /// kernel cannot (provided-buffer rings need 5.19, waits with a timeout
    /// 5.11; a 5.19 kernel without the multishot receive says so at the
    /// first one, and that connection then receives one `recv` at a time).
    pub fn multishot(self) -> Result<Uring, String> {
        let ring = IoUring::new(RING_ENTRIES).map_err(|e| format!("io_uring_setup: {e}"))?;
        let mut probe = Probe::new();
        ring.submitter()
            .register_probe(&mut probe)
            .map_err(|e| format!("io_uring probe: {e}"))?;
        if !probe.is_supported(opcode::AsyncCancel::CODE) {
            return Err("io_uring lacks ASYNC_CANCEL".into());
        }
        if !ring.params().is_feature_ext_arg() {
            return Err("io_uring lacks waits with a timeout (EXT_ARG)".into());
        }
        let bufs =
            BufRing::new(&ring).map_err(|e| format!("io_uring provided-buffer ring: {e}"))?;
        // Unregistered before its memory goes (the ring outlives it here).
        let _ = ring.submitter().unregister_buf_ring(BGID);
        drop(bufs);
        Ok(Uring { multishot: true })
    }

    /// True if this backend's receives are multishot.
    pub fn is_multishot(&self) -> bool {
        self.multishot
    }
}

/// A provided-buffer ring registered on a connection's ring: [`BUFS`]
/// entries the kernel takes buffers from, and the buffers, [`BUF_BYTES`]
/// each. Both allocations are raw (the kernel reads the entries and writes
/// into the buffers behind Rust's back: no Rust reference to an entry, or
/// to a buffer in the ring, is ever made). Freed on drop; the owner first
/// unregisters it, once no request can take a buffer any more.
struct BufRing {
    ring: NonNull<RawBuf>,
    bufs: NonNull<u8>,
    /// The next tail (entries added so far, wrapping).
    tail: u16,
}

// SAFETY: the allocations are owned by this value alone; moving it to
// another thread moves that ownership (the kernel side is the connection's
// ring, which moves with it).
unsafe impl Send for BufRing {}

impl BufRing {
    fn ring_layout() -> Layout {
        // The kernel wants the ring page-aligned.
        Layout::from_size_align(BUFS as usize * std::mem::size_of::<RawBuf>(), 4096)
            .expect("a valid layout")
    }

    fn bufs_layout() -> Layout {
        Layout::from_size_align(BUFS as usize * BUF_BYTES, 64).expect("a valid layout")
    }

    /// Allocates the ring and the buffers, registers them on `uring` as
    /// group [`BGID`], and gives the kernel every buffer.
    fn new(uring: &IoUring) -> io::Result<BufRing> {
        // SAFETY: both layouts have a non-zero size.
        let (ring, bufs) = unsafe {
            (
                std::alloc::alloc_zeroed(Self::ring_layout()),
                std::alloc::alloc_zeroed(Self::bufs_layout()),
            )
        };
        let (Some(ring), Some(bufs)) = (NonNull::new(ring.cast()), NonNull::new(bufs)) else {
            // SAFETY: each pointer is freed only if it was allocated, with
            // its own layout.
            unsafe {
                if !ring.is_null() {
                    std::alloc::dealloc(ring, Self::ring_layout());
                }
                if !bufs.is_null() {
                    std::alloc::dealloc(bufs, Self::bufs_layout());
                }
            }
            return Err(io::ErrorKind::OutOfMemory.into());
        };
        let mut this = BufRing {
            ring,
            bufs,
            tail: 0,
        };
        // SAFETY: the ring memory is page-aligned and BUFS entries long; it
        // lives until `this` is dropped, and its owner unregisters it first
        // (`UringConn`'s drop, `Uring::multishot`; on an error here nothing
        // was registered).
        unsafe {
            uring.submitter().register_buf_ring_with_flags(
                this.ring.as_ptr() as u64,
                BUFS,
                BGID,
                0,
            )?;
        }
        for bid in 0..BUFS {
            this.give(bid);
        }
        Ok(this)
    }

    /// Gives buffer `bid` (back) to the kernel.
    fn give(&mut self, bid: u16) {
        let index = (self.tail & (BUFS - 1)) as usize;
        // SAFETY: `index` < BUFS, inside the ring's allocation; the kernel
        // reads an entry only between the old and the new tail, so this
        // one, past the published tail, is ours to write: its address,
        // length and id, through raw pointers (not its last half-word, which
        // in the first entry is the tail the kernel reads meanwhile). The
        // buffer's address is inside the buffers' allocation (`bid` < BUFS).
        unsafe {
            let entry = self.ring.as_ptr().add(index);
            let addr = self.bufs.as_ptr().add(bid as usize * BUF_BYTES) as u64;
            std::ptr::addr_of_mut!((*entry).addr).write(addr);
            std::ptr::addr_of_mut!((*entry).len).write(BUF_BYTES as u32);
            std::ptr::addr_of_mut!((*entry).bid).write(bid);
        }
        self.tail = self.tail.wrapping_add(1);
        // SAFETY: the tail is the first entry's last half-word, inside the
        // ring's allocation and 2-aligned; the kernel reads it concurrently,
        // so it is only ever written as an atomic.
        let tail = unsafe {
            AtomicU16::from_ptr(std::ptr::addr_of_mut!(
                (*self.ring.as_ptr()).tail_or_reserved
            ))
        };
        // SYNC POINT: Release pairs with the kernel's acquire load of the
        // tail: the entry written above is visible before the tail says so.
        tail.store(self.tail, Ordering::Release);
    }

    /// The bytes `from..to` the kernel put into buffer `bid`.
    ///
    /// # Safety
    /// The kernel's completion for `bid` was seen and the buffer was not
    /// given back since: nothing writes it while the slice lives.
    unsafe fn bytes(&self, bid: u16, from: usize, to: usize) -> &[u8] {
        debug_assert!(bid < BUFS && from <= to && to <= BUF_BYTES);
        // SAFETY: inside the buffers' allocation (bid < BUFS, to <=
        // BUF_BYTES); not written meanwhile (the caller's contract).
        unsafe {
            std::slice::from_raw_parts(
                self.bufs.as_ptr().add(bid as usize * BUF_BYTES + from),
                to - from,
            )
        }
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with these layouts; the owner drops
        // this only once the kernel can take no buffer (the type's docs).
        unsafe {
            std::alloc::dealloc(self.ring.as_ptr().cast(), Self::ring_layout());
            std::alloc::dealloc(self.bufs.as_ptr(), Self::bufs_layout());
        }
    }
}

impl Backend for Uring {
    type Conn = UringConn;
    type Listener = UringListen;

    fn name(&self) -> &'static str {
        if self.multishot {
            "io_uring_multishot"
        } else {
            "io_uring"
        }
    }

    fn connect(
        &self,
        addr: SocketAddr,
        timeout: Duration,
        max_message: usize,
    ) -> io::Result<UringConn> {
        let stream = TcpStream::connect_timeout(&addr, timeout)?;
        UringConn::new(stream, max_message, self.recv_mode())
    }

    fn listen(&self, addr: SocketAddr, max_message: usize) -> io::Result<UringListen> {
        crate::SocketListener::bind(addr, max_message, self.recv_mode())
    }
}

impl Uring {
    fn recv_mode(&self) -> RecvMode {
        if self.multishot {
            RecvMode::Multishot
        } else {
            RecvMode::Single
        }
    }
}

impl crate::FromStream for UringConn {
    type Options = RecvMode;
    fn from_stream(stream: TcpStream, max_message: usize, mode: RecvMode) -> io::Result<UringConn> {
        UringConn::new(stream, max_message, mode)
    }
}

impl UringConn {
    fn new(stream: TcpStream, max_message: usize, mode: RecvMode) -> io::Result<UringConn> {
        stream.set_nodelay(true)?;
        // Blocking: the ring waits on the socket itself.
        stream.set_nonblocking(false)?;
        Ok(UringConn {
            stream,
            ring: IoUring::builder()
                .setup_cqsize(CQ_ENTRIES)
                .build(RING_ENTRIES)?,
            max_message,
            rx: MessageBuf::new(max_message),
            mode,
            bufs: None,
            armed: false,
            // Room for every completion the multishot receive can have
            // outstanding: a send's wait keeps them without allocating.
            early: VecDeque::with_capacity(match mode {
                RecvMode::Multishot => BUFS as usize + 1,
                RecvMode::Single => 0,
            }),
            pending: None,
        })
    }

    /// Queues `first`, linked to `then` (both or neither).
    ///
    /// # Safety
    /// Whatever the two entries point to stays alive and unmoved until
    /// [`UringConn::wait`] has collected both completions.
    unsafe fn push_linked(
        &mut self,
        first: &squeue::Entry,
        then: &squeue::Entry,
    ) -> io::Result<()> {
        let mut sq = self.ring.submission();
        if sq.capacity() - sq.len() < 2 {
            return Err(io::Error::other("io_uring submission queue full"));
        }
        // SAFETY: two free entries (checked above), so both pushes succeed
        // and nothing is left half-queued; the buffers the entries name are
        // kept alive by the caller (this function's contract).
        unsafe {
            sq.push(first)
                .map_err(|_| io::Error::other("submission queue full"))?;
            sq.push(then)
                .map_err(|_| io::Error::other("submission queue full"))?;
        }
        Ok(())
    }

    /// Submits what is queued and waits until `want` completions arrived
    /// (those of the multishot receive do not count: they are kept for
    /// [`UringConn::recv_multishot`]); returns their (user data, result)
    /// pairs. It never returns while an
    /// operation it submitted runs: the kernel may still be using the
    /// caller's buffers. If `io_uring_enter` keeps failing, the process
    /// aborts rather than let them go (it does not fail with our at most two
    /// operations in flight, and a multishot receive, and a completion queue
    /// of [`CQ_ENTRIES`], room for all their completions).
    fn wait(&mut self, want: usize) -> [(u64, i32); 2] {
        let mut got = [(0u64, 0i32); 2];
        let mut n = 0;
        let mut failures = 0;
        while n < want {
            match self.ring.submit_and_wait(want - n) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    failures += 1;
                    if failures > 1000 {
                        eprintln!("ckpt-transport: io_uring_enter keeps failing ({e}) with operations in flight; aborting");
                        std::process::abort();
                    }
                    std::thread::sleep(Duration::from_millis(1));
                    continue;
                }
            }
            for cqe in self.ring.completion() {
                if cqe.user_data() == RECV_MULTI {
                    // The multishot receive's: kept, in order, for `recv`.
                    self.early.push_back((cqe.result(), cqe.flags()));
                    continue;
                }
                if n < got.len() {
                    got[n] = (cqe.user_data(), cqe.result());
                }
                n += 1;
            }
        }
        got
    }

    /// One receive into the buffer's room, for at most `left`: the bytes
    /// received (0 when the timeout passed first).
    fn recv_once(&mut self, left: Duration) -> io::Result<usize> {
        let fd = types::Fd(self.stream.as_raw_fd());
        let free = self.rx.room();
        let len = free.len().min(u32::MAX as usize) as u32;
        let recv = opcode::Recv::new(fd, free.as_mut_ptr(), len)
            .build()
            .flags(squeue::Flags::IO_LINK)
            .user_data(RECV);
        let ts = types::Timespec::new()
            .sec(left.as_secs())
            .nsec(left.subsec_nanos());
        let timeout = opcode::LinkTimeout::new(&ts).build().user_data(TIMEOUT);
        // SAFETY: the receive writes into the buffer's room (owned by
        // `self.rx`, not touched meanwhile) and the timeout reads `ts`; both
        // stay alive until `wait` below has collected both completions (it
        // returns only then).
        unsafe { self.push_linked(&recv, &timeout) }?;
        let done = self.wait(2);
        let received = done.iter().find(|(u, _)| *u == RECV).map_or(0, |(_, r)| *r);
        match received {
            r if r > 0 => Ok(r as usize),
            0 => Err(io::ErrorKind::UnexpectedEof.into()),
            r if -r == libc::ECANCELED || -r == libc::EAGAIN || -r == libc::EINTR => Ok(0),
            r => Err(io::Error::from_raw_os_error(-r)),
        }
    }
}

/// One entry of a provided-buffer ring, as the kernel lays it out
/// (`struct io_uring_buf`); the first entry's last half-word is the ring's
/// tail.
#[repr(C)]
struct RawBuf {
    addr: u64,
    len: u32,
    bid: u16,
    tail_or_reserved: u16,
}

const _: () = assert!(std::mem::size_of::<RawBuf>() == 16);

/// What a multishot receive came to.
enum Received {
    /// A whole message of this many bytes is in the buffer.
    Message(usize),
    /// None before the deadline.
    Nothing,
    /// The kernel has no multishot receive: receive one `recv` at a time.
    Fallback,
}

impl UringConn {
    /// Receives with the multishot `recv` until a whole message is in the
    /// buffer or `deadline` passes (then after one last look).
    fn recv_multishot(&mut self, deadline: Instant) -> io::Result<Received> {
        let mut looked = false;
        loop {
            if let Some(bytes) = self.rx.ready()? {
                return Ok(Received::Message(bytes));
            }
            if self.pending.is_some() {
                self.copy_pending()?;
                continue;
            }
            if let Some((result, flags)) = self.next_completion() {
                self.completed(result, flags)?;
                if self.mode == RecvMode::Single {
                    return Ok(Received::Fallback);
                }
                continue;
            }
            if !self.armed {
                self.arm()?;
                if self.mode == RecvMode::Single {
                    return Ok(Received::Fallback);
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                if looked {
                    return Ok(Received::Nothing);
                }
                // Submit (the arm) and let due completions in, no waiting.
                looked = true;
                self.enter(0, None)?;
                continue;
            }
            self.enter(1, Some(left))?;
        }
    }

    /// Arms the multishot receive (making the provided buffers first; a
    /// kernel that refuses them makes this connection receive one `recv` at
    /// a time).
    fn arm(&mut self) -> io::Result<()> {
        if self.bufs.is_none() {
            match BufRing::new(&self.ring) {
                Ok(b) => self.bufs = Some(b),
                Err(_) => {
                    self.mode = RecvMode::Single;
                    return Ok(());
                }
            }
        }
        let fd = types::Fd(self.stream.as_raw_fd());
        let recv = opcode::RecvMulti::new(fd, BGID)
            .build()
            .user_data(RECV_MULTI);
        // SAFETY: the receive writes only into the provided buffers, which
        // the connection frees only after the receive's last completion
        // (its drop cancels and waits for it, or never frees them).
        unsafe { self.ring.submission().push(&recv) }
            .map_err(|_| io::Error::other("io_uring submission queue full"))?;
        self.armed = true;
        Ok(())
    }

    /// The multishot receive's next completion: one a send's wait kept, or
    /// the completion queue's.
    fn next_completion(&mut self) -> Option<(i32, u32)> {
        if let Some(c) = self.early.pop_front() {
            return Some(c);
        }
        // Only the receive's are there between calls (a send collects its
        // own); anything else is skipped.
        self.ring
            .completion()
            .find(|cqe| cqe.user_data() == RECV_MULTI)
            .map(|cqe| (cqe.result(), cqe.flags()))
    }

    /// Takes in a completion of the multishot receive: bytes in a provided
    /// buffer (copied into the message buffer by [`UringConn::copy_pending`]),
    /// the end of the stream, or the end of the request (armed again at the
    /// next wait).
    fn completed(&mut self, result: i32, flags: u32) -> io::Result<()> {
        if !cqueue::more(flags) {
            self.armed = false;
        }
        if result > 0 {
            let bid = cqueue::buffer_select(flags)
                .filter(|&b| b < BUFS && result as usize <= BUF_BYTES)
                .ok_or_else(|| io::Error::other("a multishot receive without a valid buffer"))?;
            self.pending = Some((bid, 0, result as usize));
            return Ok(());
        }
        match -result {
            0 => Err(io::ErrorKind::UnexpectedEof.into()),
            // Every buffer taken: the receive ended; it is armed again once
            // they are back (nothing is lost: the bytes wait in the socket).
            libc::ENOBUFS | libc::ECANCELED | libc::EINTR | libc::EAGAIN => Ok(()),
            // A kernel with provided-buffer rings but no multishot receive.
            libc::EINVAL => {
                self.mode = RecvMode::Single;
                Ok(())
            }
            e => Err(io::Error::from_raw_os_error(e)),
        }
    }

    /// Copies what the message buffer has room for out of the pending
    /// provided buffer; gives the buffer back once it is all copied.
    fn copy_pending(&mut self) -> io::Result<()> {
        let Some((bid, from, len)) = self.pending else {
            return Ok(());
        };
        let bufs = self
            .bufs
            .as_mut()
            .expect("a pending buffer is a provided one");
        let room = self.rx.room();
        let n = room.len().min(len - from);
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the receive buffer is full without a whole message",
            ));
        }
        // SAFETY: `bid`'s completion was taken in and the buffer is not
        // given back until below, after the copy.
        room[..n].copy_from_slice(unsafe { bufs.bytes(bid, from, from + n) });
        self.rx.filled(n);
        if from + n == len {
            self.pending = None;
            bufs.give(bid);
        } else {
            self.pending = Some((bid, from + n, len));
        }
        Ok(())
    }

    /// Submits what is queued and waits for `want` completions, at most
    /// `timeout` (none: no waiting). A timeout or a signal is not an error.
    fn enter(&mut self, want: usize, timeout: Option<Duration>) -> io::Result<()> {
        let r = match timeout {
            Some(t) => {
                let ts = types::Timespec::new()
                    .sec(t.as_secs())
                    .nsec(t.subsec_nanos());
                let args = types::SubmitArgs::new().timespec(&ts);
                self.ring.submitter().submit_with_args(want, &args)
            }
            None => self.ring.submit(),
        };
        match r {
            Ok(_) => Ok(()),
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ETIME | libc::EINTR | libc::EBUSY)
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }
}

impl Drop for UringConn {
    fn drop(&mut self) {
        if self.early.iter().any(|&(_, flags)| !cqueue::more(flags)) {
            self.armed = false;
        }
        if self.armed {
            // Cancelled, and its last completion waited for: only then may
            // the buffers go.
            let cancel = opcode::AsyncCancel::new(RECV_MULTI)
                .build()
                .user_data(CANCEL);
            // SAFETY: the cancel names no memory.
            let pushed = unsafe { self.ring.submission().push(&cancel) }.is_ok();
            let deadline = Instant::now() + Duration::from_secs(1);
            while pushed && self.armed && Instant::now() < deadline {
                let _ = self.enter(1, Some(Duration::from_millis(10)));
                for cqe in self.ring.completion() {
                    if cqe.user_data() == RECV_MULTI && !cqueue::more(cqe.flags()) {
                        self.armed = false;
                    }
                }
            }
        }
        if self.armed {
            // The kernel may still write into the buffers: never freed.
            std::mem::forget(self.bufs.take());
        } else if self.bufs.is_some() {
            let _ = self.ring.submitter().unregister_buf_ring(BGID);
        }
    }
}

impl Connection for UringConn {
    fn send_within(
        &mut self,
        parts: &[&[u8]],
        limit: Duration,
        cancel: Option<&AtomicBool>,
    ) -> io::Result<()> {
        let fd = types::Fd(self.stream.as_raw_fd());
        let (mut part, mut offset) = (0, 0);
        // Each write waits at most `wait` for the peer (then its linked
        // timeout cancels it, before it wrote anything: a socket write that
        // can take some bytes completes with them); `stalled` adds up the
        // waits since bytes last moved.
        let wait = if cancel.is_some() {
            limit.min(crate::CANCEL_POLL)
        } else {
            limit
        };
        let mut stalled = Duration::ZERO;
        while part < parts.len() {
            // A short write left bytes over: the peer's buffer was full, and
            // a peer that takes a little at a time would otherwise hold a
            // cancelled send until the end of its parts.
            if (part, offset) != (0, 0) {
                if let Some(e) = crate::gives_up(stalled, limit, cancel) {
                    return Err(e);
                }
            }
            let mut iov: [libc::iovec; IOV_MAX] = [libc::iovec {
                iov_base: std::ptr::null_mut(),
                iov_len: 0,
            }; IOV_MAX];
            let mut n = 0;
            for (i, p) in parts[part..].iter().enumerate().take(IOV_MAX) {
                let skip = if i == 0 { offset } else { 0 };
                iov[n] = libc::iovec {
                    iov_base: p[skip..].as_ptr() as *mut libc::c_void,
                    iov_len: p.len() - skip,
                };
                n += 1;
            }
            let write = opcode::Writev::new(fd, iov.as_ptr(), n as u32)
                .build()
                .flags(squeue::Flags::IO_LINK)
                .user_data(WRITE);
            let ts = types::Timespec::new()
                .sec(wait.as_secs())
                .nsec(wait.subsec_nanos());
            let timeout = opcode::LinkTimeout::new(&ts).build().user_data(TIMEOUT);
            // SAFETY: the kernel reads `iov`, the parts it points into and
            // `ts`; all live until `wait` below has collected both
            // completions.
            unsafe { self.push_linked(&write, &timeout) }?;
            let done = self.wait(2);
            let r = done
                .iter()
                .find(|(u, _)| *u == WRITE)
                .map_or(0, |(_, r)| *r);
            if r == -libc::ECANCELED {
                // A peer that takes nothing for `limit` ends the connection.
                stalled += wait;
                if let Some(e) = crate::gives_up(stalled, limit, cancel) {
                    return Err(e);
                }
                continue;
            }
            if r == -libc::EINTR || r == -libc::EAGAIN {
                continue;
            }
            if r < 0 {
                return Err(io::Error::from_raw_os_error(-r));
            }
            if r == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            stalled = Duration::ZERO;
            // Move past what was written.
            let mut written = r as usize;
            while written > 0 && part < parts.len() {
                let left = parts[part].len() - offset;
                if written >= left {
                    written -= left;
                    (part, offset) = (part + 1, 0);
                } else {
                    offset += written;
                    written = 0;
                }
            }
            while part < parts.len() && parts[part].len() == offset {
                (part, offset) = (part + 1, 0);
            }
        }
        Ok(())
    }

    fn recv(&mut self, timeout: Duration) -> io::Result<Option<&[u8]>> {
        let deadline = Instant::now() + timeout;
        // Multishot once the connection takes messages larger than a
        // provided buffer: while a link's start keeps the limit small (an
        // unauthenticated peer), no buffers are made and none are filled.
        if self.mode == RecvMode::Multishot && (self.armed || self.max_message > BUF_BYTES) {
            match self.recv_multishot(deadline)? {
                Received::Message(bytes) => return Ok(Some(self.rx.take(bytes))),
                Received::Nothing => return Ok(None),
                // One `recv` at a time from now on.
                Received::Fallback => {}
            }
        }
        loop {
            if let Some(bytes) = self.rx.ready()? {
                return Ok(Some(self.rx.take(bytes)));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                // A last look without waiting: bytes may be there.
                let free = self.rx.room();
                // SAFETY: recv writes at most `free.len()` bytes into `free`,
                // which we own; MSG_DONTWAIT makes it return at once.
                let r = unsafe {
                    libc::recv(
                        self.stream.as_raw_fd(),
                        free.as_mut_ptr().cast(),
                        free.len(),
                        libc::MSG_DONTWAIT,
                    )
                };
                match r {
                    0 => return Err(io::ErrorKind::UnexpectedEof.into()),
                    n if n > 0 => {
                        self.rx.filled(n as usize);
                        continue;
                    }
                    _ => {
                        let e = io::Error::last_os_error();
                        return match e.kind() {
                            io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(None),
                            _ => Err(e),
                        };
                    }
                }
            }
            let n = self.recv_once(left)?;
            self.rx.filled(n);
        }
    }

    fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.stream.peer_addr()
    }

    fn shutdown(&self) -> io::Result<()> {
        self.stream.shutdown(std::net::Shutdown::Both)
    }

    fn set_max_message(&mut self, max_message: usize) {
        self.max_message = max_message;
        self.rx.set_max_message(max_message);
    }

    fn try_clone(&self) -> io::Result<UringConn> {
        UringConn::new(self.stream.try_clone()?, self.max_message, self.mode)
    }
}
