//! The portable backend: TCP on plain sockets (`std::net`), `TCP_NODELAY`,
//! vectored writes, one receive buffer per connection that grows to the
//! largest message seen (never past the limit). Sockets are non-blocking; a
//! receive with nothing to read, or a send into a full socket buffer, sleeps
//! 20 µs and looks again (a kernel receive timeout would have the tick's
//! 4 ms granularity). The io_uring backend will wait on completions instead.

use std::io::{self, IoSlice, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use crate::{check_length, Backend, Connection, Listener};

/// Plain TCP sockets.
#[derive(Debug, Clone, Copy, Default)]
pub struct Tcp;

/// A TCP connection.
#[derive(Debug)]
pub struct TcpConn {
    stream: TcpStream,
    max_message: usize,
    /// Received bytes: `buf[start..end]` are not handed out yet.
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

/// A TCP listener.
#[derive(Debug)]
pub struct TcpListen {
    listener: TcpListener,
    max_message: usize,
}

/// Bytes read per receive call at least (the buffer starts this big).
const READ_CHUNK: usize = 64 * 1024;

/// How long a receive that found nothing sleeps before it looks again.
const IDLE_SLEEP: Duration = Duration::from_micros(20);

impl Backend for Tcp {
    type Conn = TcpConn;
    type Listener = TcpListen;

    fn name(&self) -> &'static str {
        "tcp (portable)"
    }

    fn connect(
        &self,
        addr: SocketAddr,
        timeout: Duration,
        max_message: usize,
    ) -> io::Result<TcpConn> {
        let stream = TcpStream::connect_timeout(&addr, timeout)?;
        TcpConn::new(stream, max_message)
    }

    fn listen(&self, addr: SocketAddr, max_message: usize) -> io::Result<TcpListen> {
        let listener = TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        Ok(TcpListen {
            listener,
            max_message,
        })
    }
}

impl Listener for TcpListen {
    type Conn = TcpConn;

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    fn accept(&self, timeout: Duration) -> io::Result<Option<(TcpConn, SocketAddr)>> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.listener.accept() {
                Ok((stream, peer)) => {
                    return Ok(Some((TcpConn::new(stream, self.max_message)?, peer)));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if Instant::now() >= deadline {
                        return Ok(None);
                    }
                    std::thread::sleep(Duration::from_millis(1).min(timeout));
                }
                Err(e) => return Err(e),
            }
        }
    }
}

impl TcpConn {
    fn new(stream: TcpStream, max_message: usize) -> io::Result<TcpConn> {
        stream.set_nodelay(true)?;
        // Receives poll (see `recv`), and so do sends into a full buffer.
        stream.set_nonblocking(true)?;
        Ok(TcpConn {
            stream,
            max_message,
            buf: vec![0; READ_CHUNK],
            start: 0,
            end: 0,
        })
    }

    /// The length of the whole message at `start`, once its first word is in.
    fn complete(&self) -> io::Result<Option<usize>> {
        let have = &self.buf[self.start..self.end];
        let Some(bytes) = ckpt_core::frame::message_bytes(have) else {
            return Ok(None);
        };
        check_length(bytes, self.max_message)?;
        Ok((have.len() >= bytes).then_some(bytes))
    }
}

impl Connection for TcpConn {
    fn send(&mut self, parts: &[&[u8]]) -> io::Result<()> {
        let mut slices: Vec<IoSlice<'_>> = parts.iter().map(|p| IoSlice::new(p)).collect();
        let mut rest = &mut slices[..];
        while !rest.is_empty() {
            match self.stream.write_vectored(rest) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => IoSlice::advance_slices(&mut rest, n),
                // The socket buffer is full: the peer reads slower.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::sleep(IDLE_SLEEP),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn recv(&mut self, timeout: Duration) -> io::Result<Option<&[u8]>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(bytes) = self.complete()? {
                let at = self.start;
                self.start += bytes;
                return Ok(Some(&self.buf[at..at + bytes]));
            }
            // Room for the rest of this message: move what is left to the
            // front, grow up to the message (bounded by the limit).
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            let want = ckpt_core::frame::message_bytes(&self.buf[..self.end]).unwrap_or(0);
            if self.buf.len() < want.max(self.end + READ_CHUNK / 4) {
                let grow = want
                    .max(self.end + READ_CHUNK)
                    .min(self.max_message.max(READ_CHUNK));
                self.buf.resize(grow.max(self.buf.len()), 0);
            }
            match self.stream.read(&mut self.buf[self.end..]) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => self.end += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    // A socket receive timeout has the kernel tick's
                    // granularity (4 ms here): wait in short sleeps instead.
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Ok(None);
                    }
                    std::thread::sleep(left.min(IDLE_SLEEP));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.stream.peer_addr()
    }

    fn try_clone(&self) -> io::Result<TcpConn> {
        TcpConn::new(self.stream.try_clone()?, self.max_message)
    }
}
