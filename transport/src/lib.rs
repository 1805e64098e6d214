//! # ckpt-transport: replication messages between hosts
//!
//! The node daemons exchange whole messages of `ckpt_core::frame` (a 40-byte
//! header whose first word is the message's length; a `Frames` message
//! carries frames exactly as they sit in the log ring, sealed). A
//! [`Backend`] moves them:
//!
//! - [`Connection::send`] takes a message as the parts it already is in
//!   memory (a header built on the stack, frames copied out of the ring) and
//!   sends them in one vectored write: no re-encoding, no syscall per frame;
//! - [`Connection::recv`] hands out the next whole message from the
//!   connection's own buffer, never more than the limit it was opened with
//!   (a peer announcing a bigger one is refused and the connection is of no
//!   further use).
//!
//! The trait is shaped so that a one-sided RMA backend (libfabric) can
//! implement it: a message is a contiguous run of bytes the sender commits as
//! a whole (a remote write and a doorbell), and the receiver sees only whole
//! messages. The backends: [`uring::Uring`] (io_uring: a waiting end sleeps
//! in the kernel until bytes or its timeout come) and [`tcp::Tcp`] (portable,
//! plain sockets). [`Auto::select`] picks io_uring where the kernel allows it
//! (many container runtimes block it) and says why when it falls back.

// Only the io_uring backend (`uring.rs`) uses `unsafe`, each block with a
// `// SAFETY:` comment.
#![deny(unsafe_code)]

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

pub mod tcp;
pub mod uring;

/// The smallest message (a header).
pub const MESSAGE_MIN_BYTES: usize = ckpt_core::frame::MESSAGE_HEADER_BYTES;

/// A way to move messages between hosts.
pub trait Backend: Send + Sync {
    /// A connection between two daemons.
    type Conn: Connection;
    /// A listening endpoint.
    type Listener: Listener<Conn = Self::Conn>;

    /// The backend's name, as logs and the CLI show it.
    fn name(&self) -> &'static str;

    /// Connects to `addr` within `timeout`; messages received are at most
    /// `max_message` bytes.
    fn connect(
        &self,
        addr: SocketAddr,
        timeout: Duration,
        max_message: usize,
    ) -> io::Result<Self::Conn>;

    /// Listens on `addr`; accepted connections receive messages of at most
    /// `max_message` bytes.
    fn listen(&self, addr: SocketAddr, max_message: usize) -> io::Result<Self::Listener>;
}

/// A listening endpoint.
pub trait Listener: Send {
    /// A connection between two daemons.
    type Conn: Connection;

    /// The address it listens on (with the port the system picked for 0).
    fn local_addr(&self) -> io::Result<SocketAddr>;

    /// The next connection, waiting at most `timeout` (`Ok(None)`: none came).
    fn accept(&self, timeout: Duration) -> io::Result<Option<(Self::Conn, SocketAddr)>>;
}

/// A connection that moves whole messages.
pub trait Connection: Send {
    /// Sends one or more whole messages, given as consecutive parts;
    /// `TimedOut` if the peer takes none of them for [`SEND_TIMEOUT`] (the
    /// connection is then of no further use).
    fn send(&mut self, parts: &[&[u8]]) -> io::Result<()> {
        self.send_within(parts, SEND_TIMEOUT, None)
    }

    /// [`Connection::send`], with `TimedOut` once the peer has taken no
    /// bytes for `limit` instead of [`SEND_TIMEOUT`] (a last message to a
    /// peer that may have stopped reading), and `ConnectionAborted` once
    /// `cancel` is set while the send waits for the peer to take bytes
    /// (looked at every [`CANCEL_POLL`] at least: a link being stopped).
    /// Either leaves the connection of no further use.
    fn send_within(
        &mut self,
        parts: &[&[u8]],
        limit: Duration,
        cancel: Option<&AtomicBool>,
    ) -> io::Result<()>;

    /// The next whole message, waiting at most `timeout` for it
    /// (`Ok(None)`: nothing complete arrived in time). The bytes are valid
    /// until the next call. A peer that announces a message over the limit,
    /// or one shorter than a header or not a multiple of 8, gets
    /// `InvalidData`; a closed connection `UnexpectedEof`.
    fn recv(&mut self, timeout: Duration) -> io::Result<Option<&[u8]>>;

    /// The peer's address.
    fn peer_addr(&self) -> io::Result<SocketAddr>;

    /// Ends the connection both ways, for every handle on it: a send or a
    /// receive that another thread has blocked on it returns an error at
    /// once (a link whose peer went silent while a send waits for it to
    /// take bytes).
    fn shutdown(&self) -> io::Result<()>;

    /// The largest message accepted from now on (a link keeps it small
    /// until the peer has authenticated, so that an unauthenticated peer
    /// cannot make this end hold a large buffer).
    fn set_max_message(&mut self, max_message: usize);

    /// A second handle on the same connection, so that one thread receives
    /// while another sends: use one handle only to send and the other only
    /// to receive (each keeps its own buffers).
    fn try_clone(&self) -> io::Result<Self>
    where
        Self: Sized;
}

/// A connection's receive buffer: bytes in, whole messages out. It grows to
/// the largest message seen, never past the limit.
#[derive(Debug)]
pub struct MessageBuf {
    buf: Vec<u8>,
    /// `buf[start..end]` is received and not handed out yet.
    start: usize,
    end: usize,
    max_message: usize,
}

/// Bytes a receive asks for at least (the buffer starts this big).
const READ_CHUNK: usize = 64 * 1024;

/// How long a send may wait for the peer to take bytes: a peer that stops
/// reading gets `TimedOut` rather than holding the sender forever.
pub const SEND_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// How often a send waiting for the peer looks at its cancel flag, at most.
pub const CANCEL_POLL: std::time::Duration = std::time::Duration::from_millis(20);

/// Whether a send that has waited `stalled` for the peer since bytes last
/// moved gives up (`Connection::send_within`): `TimedOut` from `limit` on,
/// `ConnectionAborted` once `cancel` is set, else `None` (it waits on).
fn gives_up(stalled: Duration, limit: Duration, cancel: Option<&AtomicBool>) -> Option<io::Error> {
    if stalled >= limit {
        Some(io::ErrorKind::TimedOut.into())
    } else if cancel.is_some_and(|c| c.load(std::sync::atomic::Ordering::Relaxed)) {
        Some(io::Error::new(
            io::ErrorKind::ConnectionAborted,
            "send cancelled",
        ))
    } else {
        None
    }
}

impl MessageBuf {
    /// An empty buffer for messages of at most `max_message` bytes.
    pub fn new(max_message: usize) -> MessageBuf {
        MessageBuf {
            buf: vec![0; READ_CHUNK],
            start: 0,
            end: 0,
            max_message,
        }
    }

    /// The length of the next message if all of it is in (`InvalidData` if
    /// its announced length is not allowed).
    pub fn ready(&self) -> io::Result<Option<usize>> {
        let have = &self.buf[self.start..self.end];
        let Some(bytes) = ckpt_core::frame::message_bytes(have) else {
            return Ok(None);
        };
        check_length(bytes, self.max_message)?;
        Ok((have.len() >= bytes).then_some(bytes))
    }

    /// Hands out the next `bytes` (a length [`MessageBuf::ready`] gave).
    pub fn take(&mut self, bytes: usize) -> &[u8] {
        let at = self.start;
        self.start += bytes;
        &self.buf[at..at + bytes]
    }

    /// Where to receive the next bytes: what is left moves to the front,
    /// and the buffer grows to hold the message in progress.
    pub fn room(&mut self) -> &mut [u8] {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        // Grow toward the message in progress as its bytes arrive (at most
        // doubling per receive): a peer announcing a large message makes
        // the buffer large only by sending it.
        let want = ckpt_core::frame::message_bytes(&self.buf[..self.end]).unwrap_or(0);
        if self.buf.len() < want.max(self.end + READ_CHUNK / 4) {
            let grow = want
                .min(self.buf.len() * 2)
                .max(self.end + READ_CHUNK)
                .min(self.max_message.max(READ_CHUNK));
            self.buf.resize(grow.max(self.buf.len()), 0);
        }
        &mut self.buf[self.end..]
    }

    /// `n` bytes were received into [`MessageBuf::room`].
    pub fn filled(&mut self, n: usize) {
        self.end += n;
    }

    /// The largest message accepted from now on.
    pub fn set_max_message(&mut self, max_message: usize) {
        self.max_message = max_message;
    }
}

/// A connection made from an accepted or connected TCP socket.
pub trait FromStream: Sized {
    /// How the backend makes its connections (its listener hands them on).
    type Options: Copy + Send + Sync + std::fmt::Debug;
    /// Wraps `stream`; received messages are at most `max_message` bytes.
    fn from_stream(
        stream: std::net::TcpStream,
        max_message: usize,
        options: Self::Options,
    ) -> io::Result<Self>;
}

/// A TCP listener for either backend (both accept on plain sockets:
/// connections are rare), handing out connections of kind `C`.
#[derive(Debug)]
pub struct SocketListener<C: FromStream> {
    listener: std::net::TcpListener,
    max_message: usize,
    options: C::Options,
}

impl<C: FromStream> SocketListener<C> {
    /// Listens on `addr` without blocking; connections are made with
    /// `options`.
    pub fn bind(addr: SocketAddr, max_message: usize, options: C::Options) -> io::Result<Self> {
        let listener = std::net::TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        Ok(SocketListener {
            listener,
            max_message,
            options,
        })
    }
}

impl<C: Connection + FromStream> Listener for SocketListener<C> {
    type Conn = C;

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Polled in 1 ms steps.
    fn accept(&self, timeout: Duration) -> io::Result<Option<(C, SocketAddr)>> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            match self.listener.accept() {
                Ok((stream, peer)) => {
                    let conn = C::from_stream(stream, self.max_message, self.options)?;
                    return Ok(Some((conn, peer)));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if std::time::Instant::now() >= deadline {
                        return Ok(None);
                    }
                    std::thread::sleep(Duration::from_millis(1).min(timeout));
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// Checks a message's announced length against the limits; the error a
/// connection returns for a bad one.
pub fn check_length(bytes: usize, max_message: usize) -> io::Result<()> {
    if bytes < MESSAGE_MIN_BYTES || bytes % 8 != 0 || bytes > max_message {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("peer announced a message of {bytes} bytes (limit {max_message}, at least {MESSAGE_MIN_BYTES}, a multiple of 8)"),
        ));
    }
    Ok(())
}

/// Which backend to use (a config setting, or `CKPT_TRANSPORT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Choice {
    /// io_uring where the kernel allows it, else the portable backend.
    #[default]
    Auto,
    /// io_uring, or an error.
    IoUring,
    /// io_uring with multishot receives into provided buffers (kernel 6.0
    /// and later), or an error. Not the default: on the development VM it
    /// measures about even with one `recv` at a time (the bench's row says
    /// by how much in each run), and it holds [`uring::BUFS`] buffers of
    /// 256 KiB per receiving connection.
    IoUringMultishot,
    /// The portable backend.
    Tcp,
}

impl Choice {
    /// The environment variable that chooses when nothing else does.
    pub const ENV: &'static str = "CKPT_TRANSPORT";

    /// The choice in `CKPT_TRANSPORT`: `Auto` if it is not set, an error
    /// naming the variable if it holds something else than a choice.
    pub fn from_env() -> Result<Choice, String> {
        match std::env::var(Choice::ENV) {
            Err(std::env::VarError::NotPresent) => Ok(Choice::Auto),
            Ok(text) => Choice::parse(&text)
                .ok_or_else(|| format!("{}={text:?}: expected {}", Choice::ENV, Choice::EXPECTED)),
            Err(_) => Err(format!("{} is not UTF-8", Choice::ENV)),
        }
    }

    /// The choices' names, for messages.
    pub const EXPECTED: &'static str = "auto, io_uring, io_uring_multishot or tcp";

    /// `auto`, `io_uring`, `io_uring_multishot` or `tcp`.
    pub fn parse(text: &str) -> Option<Choice> {
        match text {
            "auto" => Some(Choice::Auto),
            "io_uring" | "io-uring" | "uring" => Some(Choice::IoUring),
            "io_uring_multishot" | "io-uring-multishot" => Some(Choice::IoUringMultishot),
            "tcp" | "portable" => Some(Choice::Tcp),
            _ => None,
        }
    }
}

/// The backend chosen at start-up.
#[derive(Debug, Clone, Copy)]
pub enum Auto {
    /// io_uring.
    Uring(uring::Uring),
    /// Plain sockets.
    Tcp(tcp::Tcp),
}

impl Auto {
    /// The backend `CKPT_TRANSPORT` names (automatic if unset); if it is not
    /// a choice, or names one this machine cannot use, the automatic
    /// choice's, with why (tests and benches that run over any transport).
    pub fn from_env() -> (Auto, Option<String>) {
        match Choice::from_env().and_then(Auto::select) {
            Ok(picked) => picked,
            Err(why) => {
                let (auto, _) =
                    Auto::select(Choice::Auto).expect("the automatic choice never fails");
                (auto, Some(why))
            }
        }
    }

    /// [`Auto::from_env`], saying on standard error why it did not take
    /// what `CKPT_TRANSPORT` names (a test run that asked for a transport
    /// this machine lacks shows it).
    pub fn from_env_noted() -> Auto {
        let (auto, why) = Auto::from_env();
        if let Some(why) = why {
            eprintln!("SKIPPED (CKPT_TRANSPORT): {why}; {} instead", auto.name());
        }
        auto
    }

    /// The backend for `choice`, and for `Auto` falling back to the portable
    /// one, why io_uring was not taken. `Err` if `IoUring` was asked for and
    /// the kernel does not allow it.
    pub fn select(choice: Choice) -> Result<(Auto, Option<String>), String> {
        match choice {
            Choice::Tcp => Ok((Auto::Tcp(tcp::Tcp), None)),
            Choice::IoUring => uring::Uring::probe().map(|u| (Auto::Uring(u), None)),
            Choice::IoUringMultishot => uring::Uring::probe()
                .and_then(uring::Uring::multishot)
                .map(|u| (Auto::Uring(u), None)),
            Choice::Auto => Ok(match uring::Uring::probe() {
                Ok(u) => (Auto::Uring(u), None),
                Err(why) => (Auto::Tcp(tcp::Tcp), Some(why)),
            }),
        }
    }
}

/// A connection of the chosen backend.
pub enum AutoConn {
    /// io_uring (boxed: the ring's state is large).
    Uring(Box<uring::UringConn>),
    /// Plain sockets.
    Tcp(tcp::TcpConn),
}

/// A listener of the chosen backend.
pub enum AutoListen {
    /// io_uring.
    Uring(uring::UringListen),
    /// Plain sockets.
    Tcp(tcp::TcpListen),
}

impl Backend for Auto {
    type Conn = AutoConn;
    type Listener = AutoListen;

    fn name(&self) -> &'static str {
        match self {
            Auto::Uring(b) => b.name(),
            Auto::Tcp(b) => b.name(),
        }
    }

    fn connect(
        &self,
        addr: SocketAddr,
        timeout: Duration,
        max_message: usize,
    ) -> io::Result<AutoConn> {
        Ok(match self {
            Auto::Uring(b) => AutoConn::Uring(Box::new(b.connect(addr, timeout, max_message)?)),
            Auto::Tcp(b) => AutoConn::Tcp(b.connect(addr, timeout, max_message)?),
        })
    }

    fn listen(&self, addr: SocketAddr, max_message: usize) -> io::Result<AutoListen> {
        Ok(match self {
            Auto::Uring(b) => AutoListen::Uring(b.listen(addr, max_message)?),
            Auto::Tcp(b) => AutoListen::Tcp(b.listen(addr, max_message)?),
        })
    }
}

impl Listener for AutoListen {
    type Conn = AutoConn;

    fn local_addr(&self) -> io::Result<SocketAddr> {
        match self {
            AutoListen::Uring(l) => l.local_addr(),
            AutoListen::Tcp(l) => l.local_addr(),
        }
    }

    fn accept(&self, timeout: Duration) -> io::Result<Option<(AutoConn, SocketAddr)>> {
        Ok(match self {
            AutoListen::Uring(l) => l
                .accept(timeout)?
                .map(|(c, a)| (AutoConn::Uring(Box::new(c)), a)),
            AutoListen::Tcp(l) => l.accept(timeout)?.map(|(c, a)| (AutoConn::Tcp(c), a)),
        })
    }
}

impl Connection for AutoConn {
    fn send_within(
        &mut self,
        parts: &[&[u8]],
        limit: Duration,
        cancel: Option<&AtomicBool>,
    ) -> io::Result<()> {
        match self {
            AutoConn::Uring(c) => c.send_within(parts, limit, cancel),
            AutoConn::Tcp(c) => c.send_within(parts, limit, cancel),
        }
    }

    fn recv(&mut self, timeout: Duration) -> io::Result<Option<&[u8]>> {
        match self {
            AutoConn::Uring(c) => c.recv(timeout),
            AutoConn::Tcp(c) => c.recv(timeout),
        }
    }

    fn peer_addr(&self) -> io::Result<SocketAddr> {
        match self {
            AutoConn::Uring(c) => c.peer_addr(),
            AutoConn::Tcp(c) => c.peer_addr(),
        }
    }

    fn shutdown(&self) -> io::Result<()> {
        match self {
            AutoConn::Uring(c) => c.shutdown(),
            AutoConn::Tcp(c) => c.shutdown(),
        }
    }

    fn set_max_message(&mut self, max_message: usize) {
        match self {
            AutoConn::Uring(c) => c.set_max_message(max_message),
            AutoConn::Tcp(c) => c.set_max_message(max_message),
        }
    }

    fn try_clone(&self) -> io::Result<AutoConn> {
        Ok(match self {
            AutoConn::Uring(c) => AutoConn::Uring(Box::new(c.try_clone()?)),
            AutoConn::Tcp(c) => AutoConn::Tcp(c.try_clone()?),
        })
    }
}
