//! The portable backend: TCP on plain sockets (`std::net`), `TCP_NODELAY`,
//! vectored writes, one receive buffer per connection that grows to the
//! largest message seen (never past the limit). Sockets are non-blocking; a
//! receive with nothing to read, or a send into a full socket buffer, sleeps
//! 20 µs and looks again (a kernel receive timeout would have the tick's
//! 4 ms granularity). The io_uring backend will wait on completions instead.

use std::io::{self, IoSlice, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use crate::{Backend, Connection, MessageBuf};

/// Plain TCP sockets.
#[derive(Debug, Clone, Copy, Default)]
pub struct Tcp;

/// A TCP connection.
#[derive(Debug)]
pub struct TcpConn {
    stream: TcpStream,
    max_message: usize,
    rx: MessageBuf,
}

/// A listener whose connections are [`TcpConn`]s.
pub type TcpListen = crate::SocketListener<TcpConn>;

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
        crate::SocketListener::bind(addr, max_message, ())
    }
}

impl crate::FromStream for TcpConn {
    type Options = ();
    fn from_stream(stream: TcpStream, max_message: usize, (): ()) -> io::Result<TcpConn> {
        TcpConn::new(stream, max_message)
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
            rx: MessageBuf::new(max_message),
        })
    }
}

impl Connection for TcpConn {
    fn send_within(
        &mut self,
        parts: &[&[u8]],
        limit: Duration,
        cancel: Option<&AtomicBool>,
    ) -> io::Result<()> {
        let mut slices: Vec<IoSlice<'_>> = parts.iter().map(|p| IoSlice::new(p)).collect();
        let mut rest = &mut slices[..];
        let mut stalled_since: Option<Instant> = None;
        while !rest.is_empty() {
            match self.stream.write_vectored(rest) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    IoSlice::advance_slices(&mut rest, n);
                    stalled_since = None;
                }
                // The socket buffer is full: the peer reads slower.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let since = *stalled_since.get_or_insert_with(Instant::now);
                    if let Some(e) = crate::gives_up(since.elapsed(), limit, cancel) {
                        return Err(e);
                    }
                    std::thread::sleep(IDLE_SLEEP)
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
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
            match self.stream.read(self.rx.room()) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => self.rx.filled(n),
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

    fn shutdown(&self) -> io::Result<()> {
        self.stream.shutdown(std::net::Shutdown::Both)
    }

    fn set_max_message(&mut self, max_message: usize) {
        self.max_message = max_message;
        self.rx.set_max_message(max_message);
    }

    fn try_clone(&self) -> io::Result<TcpConn> {
        TcpConn::new(self.stream.try_clone()?, self.max_message)
    }
}
