//! The io_uring backend: sockets set up by `std::net`, every send and
//! receive through a ring of the connection's own. A send is one `writev`
//! of the message's parts; a receive is a `recv` linked to a timeout, so a
//! waiting end sleeps in the kernel until bytes come or the timeout passes
//! (no polling). [`Uring::probe`] checks at start-up that the kernel allows
//! io_uring and has the operations (many container runtimes block it); where
//! it does not, [`crate::Auto`] uses the portable backend.
//!
//! Every operation is waited for before the call returns, so the buffers
//! the kernel reads or writes (the parts, the receive buffer, the timeout)
//! outlive it; nothing is left in flight between calls.

#![allow(unsafe_code)]

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use io_uring::{opcode, squeue, types, IoUring, Probe};

use crate::{Backend, Connection, MessageBuf};

/// The io_uring backend (after a successful [`Uring::probe`]).
#[derive(Debug, Clone, Copy)]
pub struct Uring {
    _probed: (),
}

/// A connection whose I/O goes through its own ring.
pub struct UringConn {
    stream: TcpStream,
    ring: IoUring,
    max_message: usize,
    rx: MessageBuf,
}

/// A listener whose connections are [`UringConn`]s.
pub type UringListen = crate::SocketListener<UringConn>;

/// Submission queue entries per connection ring.
const RING_ENTRIES: u32 = 8;
/// Parts of one send at most per `writev` (the rest follow).
const IOV_MAX: usize = 64;

const RECV: u64 = 1;
const TIMEOUT: u64 = 2;
const WRITE: u64 = 3;

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
        Ok(Uring { _probed: () })
    }
}

impl Backend for Uring {
    type Conn = UringConn;
    type Listener = UringListen;

    fn name(&self) -> &'static str {
        "io_uring"
    }

    fn connect(
        &self,
        addr: SocketAddr,
        timeout: Duration,
        max_message: usize,
    ) -> io::Result<UringConn> {
        UringConn::new(TcpStream::connect_timeout(&addr, timeout)?, max_message)
    }

    fn listen(&self, addr: SocketAddr, max_message: usize) -> io::Result<UringListen> {
        crate::SocketListener::bind(addr, max_message)
    }
}

impl crate::FromStream for UringConn {
    fn from_stream(stream: TcpStream, max_message: usize) -> io::Result<UringConn> {
        UringConn::new(stream, max_message)
    }
}

impl UringConn {
    fn new(stream: TcpStream, max_message: usize) -> io::Result<UringConn> {
        stream.set_nodelay(true)?;
        // Blocking: the ring waits on the socket itself.
        stream.set_nonblocking(false)?;
        Ok(UringConn {
            stream,
            ring: IoUring::new(RING_ENTRIES)?,
            max_message,
            rx: MessageBuf::new(max_message),
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

    /// Submits what is queued and waits until `want` completions arrived;
    /// returns their (user data, result) pairs. It never returns while an
    /// operation it submitted runs: the kernel may still be using the
    /// caller's buffers. If `io_uring_enter` keeps failing, the process
    /// aborts rather than let them go (it does not fail with our at most two
    /// operations in flight and a completion queue twice the ring's size).
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

impl Connection for UringConn {
    fn send(&mut self, parts: &[&[u8]]) -> io::Result<()> {
        let fd = types::Fd(self.stream.as_raw_fd());
        let (mut part, mut offset) = (0, 0);
        while part < parts.len() {
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
            // A peer that takes nothing for this long ends the connection.
            let ts = types::Timespec::new()
                .sec(crate::SEND_TIMEOUT.as_secs())
                .nsec(crate::SEND_TIMEOUT.subsec_nanos());
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
                return Err(io::ErrorKind::TimedOut.into());
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

    fn set_max_message(&mut self, max_message: usize) {
        self.max_message = max_message;
        self.rx.set_max_message(max_message);
    }

    fn try_clone(&self) -> io::Result<UringConn> {
        UringConn::new(self.stream.try_clone()?, self.max_message)
    }
}
