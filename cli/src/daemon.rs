//! `ckpt daemon`: the node daemon ([`ckpt::node`]) in the foreground, with
//! a TOML configuration and flags, `tracing` logs on standard error, a
//! control socket that `ckpt peers` reads, optional Prometheus metrics, and
//! a clean stop on SIGTERM or SIGINT. `dist/ckpt-daemon.service` runs it
//! under systemd, with `dist/ckptd.toml` as its configuration.
//!
//! The configuration file (every key optional; flags override it):
//!
//! ```toml
//! node = 1                      # this node's id (applications: CKPT_NODE_ID)
//! name = "alpha"
//! listen = "0.0.0.0:7400"       # where peers connect
//! dir = "/dev/shm/ckpt"         # the segment directory (--dir and CKPT_DIR win)
//! key_file = "/etc/ckpt/cluster.key"
//! encrypt = false               # seal every message (needs key_file)
//! transport = "auto"            # auto, io_uring, io_uring_multishot or tcp
//! metrics = "127.0.0.1:9464"    # Prometheus text on GET /metrics
//! control = "/dev/shm/ckpt/.ckptd.sock"
//! membership = "static"         # or "corosync" (a build with the feature)
//! corosync_group = "ckpt"       # the CPG group of the daemons (corosync)
//! heartbeat_ms = 100
//! silence_ms = 1000
//! connect_timeout_ms = 2000
//! retry_max_ms = 2000
//! scan_ms = 200
//! max_message_bytes = 67108864
//! incoming_max = 256
//! log_bytes = 8388608           # the delta-log ring of replicas made here (at least)
//!
//! [[peer]]
//! node = 2
//! name = "beta"
//! address = "beta.example:7400"
//!
//! # Where non-collocated checkpoints get replicas: the first rule whose
//! # prefix a name begins with (no rule: every peer). Collocated ones get a
//! # replica only where a process opens them, and any checkpoint gets one
//! # wherever a process opens it.
//! [[placement]]
//! prefix = "safCkpt=billing"
//! nodes = [2]
//! ```

use std::io::{IsTerminal, Read, Write};
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ckpt::control::{
    forward_answer, unlink_answer, want_answer, Forwarded, Request, Unlinked, Wanted,
};
use ckpt::membership::Membership;
use ckpt::node::{Node, NodeConfig, NodeHandle, NodeStatus, Peer, Placement};
use ckpt::Config;
use ckpt_transport::{Auto, Backend, Choice};
use serde::Deserialize;

use crate::replicate::{read_key, stop_on_signals};

pub use ckpt::control::CONTROL_NAME;
/// `want` requests answered at once at most (each waits on a thread of its
/// own for a replica to come); more are answered `timeout`.
const WANTS_AT_ONCE_MAX: usize = 64;
/// Control connections served at once at most (each on a thread of its
/// own); more are answered `busy`.
const CONTROL_AT_ONCE_MAX: usize = 128;
/// How long the control and metrics endpoints wait for a client.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(2);
/// The largest request the metrics endpoint reads.
const REQUEST_BYTES_MAX: usize = 8192;

/// `ckpt daemon`'s flags.
#[derive(clap::Args, Debug, Default)]
pub struct DaemonArgs {
    /// A TOML configuration file; the flags below override it.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// This node's id (the applications of this host use the same, in
    /// CKPT_NODE_ID).
    #[arg(long)]
    node: Option<u32>,
    /// This node's name (default: the host name).
    #[arg(long)]
    name: Option<String>,
    /// Where peers connect (default 0.0.0.0:7400).
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// A peer, as ID=HOST:PORT or ID:NAME=HOST:PORT; repeat for each (they
    /// replace the file's peers).
    #[arg(long = "peer", value_name = "ID[:NAME]=ADDR")]
    peers: Vec<String>,
    /// A file holding the cluster key (at least 16 bytes, readable by its
    /// owner only). Without one, links are not authenticated.
    #[arg(long, value_name = "FILE")]
    key_file: Option<PathBuf>,
    /// Encrypt the links (ChaCha20-Poly1305 under keys derived from the
    /// cluster key at each connection); needs a key file, on every node.
    #[arg(long)]
    encrypt: bool,
    /// auto (io_uring where the kernel allows it), io_uring or tcp
    /// (default: $CKPT_TRANSPORT, else auto).
    #[arg(long)]
    transport: Option<String>,
    /// static (the configured peers, no quorum) or corosync (the daemons in
    /// a corosync CPG group are the peers; a node whose partition has no
    /// quorum fences its copies). corosync needs a build with the
    /// `corosync` feature.
    #[arg(long, value_name = "MODE")]
    membership: Option<String>,
    /// Serve Prometheus metrics on this address (GET /metrics).
    #[arg(long, value_name = "ADDR")]
    metrics: Option<String>,
    /// The control socket `ckpt peers` reads (default: .ckptd.sock in the
    /// segment directory).
    #[arg(long, value_name = "PATH")]
    control: Option<PathBuf>,
    /// Bytes of the delta-log ring of the replicas this daemon makes, at
    /// least: a power of two, 64 KiB to 1 GiB (default: the primary's, which
    /// its creation frame carries, up to 64 MiB; a smaller setting leaves
    /// the primary's, whose largest frames a replica must take). A replica
    /// that becomes the primary keeps its ring, which must hold what a link
    /// falls behind by.
    #[arg(long, value_name = "BYTES")]
    log_bytes: Option<u64>,
}

/// The configuration file.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    node: Option<u32>,
    name: Option<String>,
    listen: Option<String>,
    dir: Option<PathBuf>,
    key_file: Option<PathBuf>,
    encrypt: Option<bool>,
    transport: Option<String>,
    metrics: Option<String>,
    control: Option<PathBuf>,
    membership: Option<String>,
    corosync_group: Option<String>,
    heartbeat_ms: Option<u64>,
    silence_ms: Option<u64>,
    connect_timeout_ms: Option<u64>,
    retry_max_ms: Option<u64>,
    scan_ms: Option<u64>,
    max_message_bytes: Option<usize>,
    incoming_max: Option<usize>,
    log_bytes: Option<u64>,
    #[serde(default)]
    peer: Vec<FilePeer>,
    #[serde(default)]
    placement: Vec<FilePlacement>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct FilePlacement {
    prefix: String,
    nodes: Vec<u32>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct FilePeer {
    node: u32,
    name: Option<String>,
    address: String,
}

/// A daemon's whole configuration, checked.
pub struct Settings {
    /// The node.
    pub node: NodeConfig,
    /// The transport asked for.
    pub transport: Choice,
    /// Where metrics are served, if anywhere.
    pub metrics: Option<SocketAddr>,
    /// The control socket.
    pub control: PathBuf,
}

/// Resolves `text` (HOST:PORT) to its first address.
fn address(what: &str, text: &str) -> Result<SocketAddr, String> {
    text.to_socket_addrs()
        .map_err(|e| format!("{what} {text:?}: {e}"))?
        .next()
        .ok_or_else(|| format!("{what} {text:?}: no address"))
}

/// Parses a `--peer` flag: ID=ADDR or ID:NAME=ADDR.
fn peer_flag(text: &str) -> Result<Peer, String> {
    let bad = || format!("--peer {text:?}: expected ID=HOST:PORT or ID:NAME=HOST:PORT");
    let (who, addr) = text.split_once('=').ok_or_else(bad)?;
    let (id, name) = match who.split_once(':') {
        Some((id, name)) if !name.is_empty() => (id, Some(name)),
        Some(_) => return Err(bad()),
        None => (who, None),
    };
    let node: u32 = id.trim().parse().map_err(|_| bad())?;
    Ok(Peer {
        node,
        name: name.map_or_else(|| format!("node{node}"), str::to_string),
        address: address("peer address", addr)?,
    })
}

fn millis(what: &str, ms: Option<u64>, default: Duration) -> Result<Duration, String> {
    match ms {
        None => Ok(default),
        Some(0) => Err(format!("{what} must be above 0")),
        Some(ms) => Ok(Duration::from_millis(ms)),
    }
}

impl DaemonArgs {
    /// The file (if any), then the flags over it; `dir` is the segment
    /// directory asked for by --dir or CKPT_DIR (it wins over the file's).
    pub fn settings(&self, config: &Config, dir: Option<&Path>) -> Result<Settings, String> {
        let file = match &self.config {
            None => FileConfig::default(),
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("config {}: {e}", path.display()))?;
                toml::from_str(&text).map_err(|e| format!("config {}: {e}", path.display()))?
            }
        };
        let membership = match self.membership.as_deref().or(file.membership.as_deref()) {
            None | Some("static") => Membership::Static,
            Some("corosync") => Membership::Corosync {
                group: file
                    .corosync_group
                    .clone()
                    .unwrap_or_else(|| Membership::GROUP.into()),
            },
            Some(other) => {
                return Err(format!(
                    "membership {other:?}: expected \"static\" or \"corosync\""
                ))
            }
        };
        if !membership.available() {
            return Err(
                "membership \"corosync\": this ckpt was built without corosync support \
                 (cargo build --features corosync, with the corosync client libraries installed)"
                    .into(),
            );
        }
        let mut segments = config.clone();
        if let (None, Some(d)) = (dir, &file.dir) {
            segments.dir = d.clone();
        }
        let node = self
            .node
            .or(file.node)
            .ok_or("no node id: give --node or `node` in the config file")?;
        let name = match self.name.clone().or(file.name) {
            Some(n) => n,
            None => hostname(),
        };
        let listen = self
            .listen
            .clone()
            .or(file.listen)
            .unwrap_or_else(|| "0.0.0.0:7400".into());
        let listen = address("listen address", &listen)?;
        let mut c = NodeConfig::new(node, &name, listen, segments);
        c.membership = membership;
        c.peers = if self.peers.is_empty() {
            file.peer
                .iter()
                .map(|p| {
                    Ok(Peer {
                        node: p.node,
                        name: p.name.clone().unwrap_or_else(|| format!("node{}", p.node)),
                        address: address("peer address", &p.address)?,
                    })
                })
                .collect::<Result<_, String>>()?
        } else {
            self.peers
                .iter()
                .map(|p| peer_flag(p))
                .collect::<Result<_, _>>()?
        };
        c.placement = file
            .placement
            .iter()
            .map(|r| Placement {
                prefix: r.prefix.as_bytes().to_vec(),
                nodes: r.nodes.clone(),
            })
            .collect();
        let link = &mut c.link;
        link.link.heartbeat_ns = millis(
            "heartbeat_ms",
            file.heartbeat_ms,
            Duration::from_nanos(link.link.heartbeat_ns),
        )?
        .as_nanos() as u64;
        link.link.silence_ns = millis(
            "silence_ms",
            file.silence_ms,
            Duration::from_nanos(link.link.silence_ns),
        )?
        .as_nanos() as u64;
        if link.link.heartbeat_ns * 2 > link.link.silence_ns {
            return Err("silence_ms must be at least twice heartbeat_ms".into());
        }
        if let Some(bytes) = file.max_message_bytes {
            let min = 2 * link.batch_bytes.min(1 << 20);
            if !(min..=1 << 30).contains(&bytes) {
                return Err(format!(
                    "max_message_bytes {bytes}: expected {min} to {}",
                    1u64 << 30
                ));
            }
            link.max_message = bytes;
            link.batch_bytes = link.batch_bytes.min(bytes / 2);
        }
        let key_file = self.key_file.clone().or(file.key_file);
        if let Some(path) = &key_file {
            link.key = Some(read_key(path)?);
        }
        link.encrypt = self.encrypt || file.encrypt.unwrap_or(false);
        if link.encrypt && link.key.is_none() {
            return Err(
                "encrypt needs a key file (the session keys come from the cluster key)".into(),
            );
        }
        c.connect_timeout = millis(
            "connect_timeout_ms",
            file.connect_timeout_ms,
            c.connect_timeout,
        )?;
        c.retry_max = millis("retry_max_ms", file.retry_max_ms, c.retry_max)?;
        c.scan = millis("scan_ms", file.scan_ms, c.scan)?;
        if let Some(n) = file.incoming_max {
            c.incoming_max = n;
        }
        if let Some(bytes) = self.log_bytes.or(file.log_bytes) {
            let (min, max) = (
                ckpt_shm::layout::LOG_BYTES_MIN,
                ckpt_shm::layout::LOG_BYTES_MAX,
            );
            if !bytes.is_power_of_two() || !(min..=max).contains(&bytes) {
                return Err(format!(
                    "log_bytes {bytes}: expected a power of two from {min} to {max}"
                ));
            }
            c.segments.log_bytes = Some(bytes);
        }
        c.check().map_err(|e| e.to_string())?;
        let transport = match self.transport.clone().or(file.transport) {
            Some(t) => Choice::parse(&t)
                .ok_or_else(|| format!("transport {t:?}: expected {}", Choice::EXPECTED))?,
            None => Choice::from_env()?,
        };
        let metrics = match self.metrics.clone().or(file.metrics) {
            Some(a) => Some(address("metrics address", &a)?),
            None => None,
        };
        let control = self
            .control
            .clone()
            .or(file.control)
            .unwrap_or_else(|| c.segments.dir.join(CONTROL_NAME));
        Ok(Settings {
            node: c,
            transport,
            metrics,
            control,
        })
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "node".into())
}

/// Runs the daemon until SIGTERM or SIGINT.
pub fn run(settings: Settings) -> Result<(), String> {
    init_logs();
    let stop = stop_on_signals()?;
    let (backend, fallback) = Auto::select(settings.transport)?;
    match fallback {
        None => tracing::info!("transport: {}", backend.name()),
        Some(why) => tracing::warn!("transport: {} ({why})", backend.name()),
    }
    // The segment directory as ckpt makes it (0700, or 02770 with
    // CKPT_GROUP_ACCESS=1), and refuses it (another owner, writable by
    // others), before anything is put in it.
    let segments = &settings.node.segments;
    ckpt_shm::dir::SegmentDir::open(segments, true).map_err(|e| {
        format!(
            "segment directory {}: {}",
            segments.dir.display(),
            match e {
                ckpt_shm::dir::DirFault::Io(e) => e.to_string(),
                ckpt_shm::dir::DirFault::Untrusted => ckpt::OpenError::UntrustedDir.to_string(),
            }
        )
    })?;
    let control = bind_control(&settings.control, settings.node.segments.group_access)?;
    let metrics = match settings.metrics {
        Some(addr) => {
            Some(TcpListener::bind(addr).map_err(|e| format!("metrics address {addr}: {e}"))?)
        }
        None => None,
    };
    let node = Node::start(settings.node, backend).map_err(|e| e.to_string())?;
    let handle = node.handle();
    let node = Arc::new(Mutex::new(Some(node)));
    let status = {
        let node = node.clone();
        move || {
            let guard = node.lock().unwrap_or_else(|p| p.into_inner());
            guard.as_ref().map(|n| n.status())
        }
    };
    tracing::info!(control = %settings.control.display(), "answering `ckpt peers` and applications' opens");
    spawn_server("ckpt-control", {
        let status: StatusFn = Arc::new(status.clone());
        let stop = stop.clone();
        move || serve_control(control, stop, status, handle)
    })?;
    if let Some(listener) = metrics {
        let at = listener.local_addr().map_err(|e| e.to_string())?;
        tracing::info!(metrics = %at, "serving Prometheus metrics on /metrics");
        let stop = stop.clone();
        spawn_server("ckpt-metrics", move || {
            serve_metrics(&listener, &stop, &status)
        })?;
    }
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(50));
    }
    tracing::info!("stopping");
    let taken = node.lock().unwrap_or_else(|p| p.into_inner()).take();
    if let Some(n) = taken {
        n.stop();
    }
    // The control thread waits in accept: a connection wakes it to stop.
    let _ = UnixStream::connect(&settings.control);
    let _ = std::fs::remove_file(&settings.control);
    Ok(())
}

fn spawn_server(name: &str, f: impl FnOnce() + Send + 'static) -> Result<(), String> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(f)
        .map(drop)
        .map_err(|e| format!("cannot start {name}: {e}"))
}

/// `tracing` to standard error, filtered by RUST_LOG (default `info`).
fn init_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

// ---------------------------------------------------------------------------
// The control socket

/// Binds the control socket (owner only; owner and group with
/// `group_access`, as the segments). A socket left by a daemon that died is
/// replaced; one a running daemon answers on is an error.
fn bind_control(path: &Path, group_access: bool) -> Result<UnixListener, String> {
    let shown = path.display();
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| format!("control socket {shown}: {e}"))?;
    }
    if UnixStream::connect(path).is_ok() {
        return Err(format!(
            "another daemon answers on {shown}: one daemon per segment directory"
        ));
    }
    match std::fs::symlink_metadata(path) {
        Ok(m) if std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()) => {
            let _ = std::fs::remove_file(path);
        }
        Ok(_) => {
            return Err(format!(
                "control socket {shown}: exists and is not a socket"
            ))
        }
        Err(_) => {}
    }
    let listener = UnixListener::bind(path).map_err(|e| format!("control socket {shown}: {e}"))?;
    let mode = if group_access { 0o660 } else { 0o600 };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| format!("control socket {shown}: {e}"))?;
    Ok(listener)
}

/// The status, as the control socket's threads ask for it.
type StatusFn = Arc<dyn Fn() -> Option<NodeStatus> + Send + Sync>;

/// `n` of at most `max` at once of something counted in `count` (a control
/// connection served, a want waiting, bytes of changes being read), given
/// back when dropped, whatever path its holder leaves by.
struct Counted<C: std::ops::Deref<Target = AtomicUsize>>(C, usize);

impl<C: std::ops::Deref<Target = AtomicUsize>> Counted<C> {
    /// One more, or `None` if `max` are held already.
    fn take(count: C, max: usize) -> Option<Counted<C>> {
        Counted::take_n(count, 1, max)
    }

    /// `n` more, or `None` if that would pass `max`.
    fn take_n(count: C, n: usize, max: usize) -> Option<Counted<C>> {
        if count.fetch_add(n, Ordering::Relaxed) + n > max {
            count.fetch_sub(n, Ordering::Relaxed);
            return None;
        }
        Some(Counted(count, n))
    }
}

impl<C: std::ops::Deref<Target = AtomicUsize>> Drop for Counted<C> {
    fn drop(&mut self) {
        self.0.fetch_sub(self.1, Ordering::Relaxed);
    }
}

/// Answers each connection's request ([`ckpt::control`]) on a thread of its
/// own (a `want` waits for a replica; a slow client holds only its own
/// thread), at most [`CONTROL_AT_ONCE_MAX`] at once: past that a
/// connection is answered `busy`. Accepting blocks; [`run`] connects once
/// after setting `stop` to end it.
fn serve_control(
    listener: UnixListener,
    stop: Arc<std::sync::atomic::AtomicBool>,
    status: StatusFn,
    node: NodeHandle,
) {
    let serving = Arc::new(AtomicUsize::new(0));
    let wanting = Arc::new(AtomicUsize::new(0));
    for stream in listener.incoming() {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let stream = match stream {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("control socket: {e}");
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        let Some(served) = Counted::take(serving.clone(), CONTROL_AT_ONCE_MAX) else {
            let _ = stream.set_write_timeout(Some(Duration::from_millis(100)));
            let _ = (&stream).write_all(ckpt::control::BUSY_ANSWER.as_bytes());
            continue;
        };
        let (status, node, wanting) = (status.clone(), node.clone(), wanting.clone());
        // A thread that cannot start drops its closure, and the count.
        let _ = std::thread::Builder::new()
            .name("ckpt-control".into())
            .spawn(move || {
                let _served = served;
                let _ = answer_control(stream, &*status, &node, &wanting);
            });
    }
}

/// Reads a client's request: up to `max` bytes, until `end` is among them,
/// the client closes, or [`CLIENT_TIMEOUT`] has passed since it connected
/// (one deadline for the whole request: a client that trickles bytes does
/// not hold the server longer).
fn read_request<S: Read + AsTimeout>(
    stream: S,
    end: &[u8],
    max: usize,
) -> std::io::Result<Vec<u8>> {
    let mut request = Vec::new();
    let has_end = |r: &[u8]| r.windows(end.len()).any(|w| w == end);
    read_into(stream, &mut request, max, has_end)?;
    Ok(request)
}

/// Reads from `stream` onto `into` until `done` says so, `into` holds `max`
/// bytes, the client closes, or [`CLIENT_TIMEOUT`] has passed since the
/// call (one deadline for the whole read: a client that trickles bytes
/// does not hold the server longer).
fn read_into<S: Read + AsTimeout>(
    stream: S,
    into: &mut Vec<u8>,
    max: usize,
    done: impl Fn(&[u8]) -> bool,
) -> std::io::Result<()> {
    let deadline = std::time::Instant::now() + CLIENT_TIMEOUT;
    let mut stream = stream;
    let mut buf = [0u8; 64 << 10];
    while !done(into) && into.len() < max {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Err(std::io::ErrorKind::TimedOut.into());
        }
        stream.set_timeout(left)?;
        let room = (max - into.len()).min(buf.len());
        match stream.read(&mut buf[..room])? {
            0 => break,
            n => into.extend_from_slice(&buf[..n]),
        }
    }
    Ok(())
}

/// A stream whose reads can be given a timeout (the control socket's and the
/// metrics endpoint's).
trait AsTimeout {
    fn set_timeout(&mut self, t: Duration) -> std::io::Result<()>;
}

impl AsTimeout for &UnixStream {
    fn set_timeout(&mut self, t: Duration) -> std::io::Result<()> {
        self.set_read_timeout(Some(t))
    }
}

impl AsTimeout for &std::net::TcpStream {
    fn set_timeout(&mut self, t: Duration) -> std::io::Result<()> {
        self.set_read_timeout(Some(t))
    }
}

fn answer_control(
    stream: UnixStream,
    status: &dyn Fn() -> Option<NodeStatus>,
    node: &NodeHandle,
    wanting: &Arc<AtomicUsize>,
) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_write_timeout(Some(CLIENT_TIMEOUT))?;
    let request = read_request(&stream, b"\n", ckpt::control::REQUEST_BYTES_MAX)?;
    // The line, and what came after it (a `forward`'s change begins there).
    let (line, after) = match request.iter().position(|&b| b == b'\n') {
        Some(at) => (&request[..at], &request[at + 1..]),
        None => (&request[..], &[][..]),
    };
    let mut out = &stream;
    match Request::parse(line) {
        Ok(Request::Status) => match status() {
            Some(s) => {
                let json = serde_json::to_string(&s).expect("serializable");
                writeln!(out, "{json}")
            }
            None => writeln!(out, "{{\"error\":\"stopping\"}}"),
        },
        Ok(Request::Want {
            name,
            wait,
            existing,
        }) => {
            let w = match node.offered(&name) {
                // An open without CREATE waits a moment for a first offer.
                Some(Wanted::Unknown) if existing => None,
                quick => quick,
            };
            let w = match w {
                Some(quick) => quick,
                None => waiting(&stream, wanting, &name, Wanted::TimedOut, |gone| {
                    node.want(&name, wait, existing, gone)
                })?,
            };
            out.write_all(want_answer(w).as_bytes())
        }
        Ok(Request::Unlink { name, wait }) => {
            let u = waiting(&stream, wanting, &name, Unlinked::TimedOut, |gone| {
                node.unlink(&name, wait, gone)
            })?;
            out.write_all(unlink_answer(u).as_bytes())
        }
        Ok(Request::Forward { name, wait, bytes }) => {
            let change = match read_payload(&stream, after, bytes) {
                Ok(c) => c,
                Err(why) => return writeln!(out, "{}", serde_json::json!({ "error": why })),
            };
            // Too many waiting: not sent, so the caller may retry.
            let busy = Forwarded::Answered(ckpt::forward::untried(ckpt::forward::RESULT_BUSY));
            let f = waiting(&stream, wanting, &name, busy, |gone| {
                node.forward(&name, change, wait, gone)
            })?;
            out.write_all(forward_answer(&f).as_bytes())
        }
        Err(why) => writeln!(out, "{}", serde_json::json!({ "error": why })),
    }
}

/// Bytes of forwarded changes the control connections read at once.
static READING: AtomicUsize = AtomicUsize::new(0);
/// At most this many ([`READING`]): two of the largest changes.
const READING_MAX: usize = 2 * ckpt::control::FORWARD_BYTES_MAX;

/// A request's `bytes` bytes after its line: `first` (read with the line),
/// then the rest from `stream` within [`CLIENT_TIMEOUT`]. Checked whole:
/// a [`ForwardRequest`](ckpt_core::frame::ForwardRequest), not more.
fn read_payload(stream: &UnixStream, first: &[u8], bytes: usize) -> Result<Vec<u8>, String> {
    if first.len() > bytes {
        return Err("more bytes after the request than it announced".into());
    }
    // Bytes of changes read at once, across connections, are bounded: past
    // the bound a request is refused before its bytes are read.
    let Some(_reading) = Counted::take_n(&READING, bytes, READING_MAX) else {
        return Err(format!(
            "busy: changes of {READING_MAX} bytes are being read already"
        ));
    };
    let mut change = Vec::with_capacity(bytes);
    change.extend_from_slice(first);
    match read_into(stream, &mut change, bytes, |c| c.len() >= bytes) {
        Ok(()) if change.len() == bytes => {}
        Ok(()) => return Err("the client closed before the whole change".into()),
        Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
            return Err("the change did not come in time".into())
        }
        Err(e) => return Err(format!("reading the change: {e}")),
    }
    ckpt_core::frame::ForwardRequest::decode(&change)
        .map_err(|e| format!("forward: the change does not decode: {e}"))?;
    Ok(change)
}

/// Runs a request that waits (for a replica, for the primary's answer) as
/// one of at most [`WANTS_AT_ONCE_MAX`]; more are answered `busy` at once.
/// `run` is told whether the asker hung up (its wait then ends).
fn waiting<A>(
    stream: &UnixStream,
    wanting: &Arc<AtomicUsize>,
    name: &ckpt_core::CheckpointName,
    busy: A,
    run: impl FnOnce(&dyn Fn() -> bool) -> A,
) -> std::io::Result<A> {
    let Some(_waiting) = Counted::take(wanting.clone(), WANTS_AT_ONCE_MAX) else {
        // Logged at most once a second (a burst of requests would log
        // thousands of lines).
        static LOGGED: std::sync::Mutex<Option<std::time::Instant>> = std::sync::Mutex::new(None);
        let mut last = LOGGED.lock().unwrap_or_else(|p| p.into_inner());
        if last.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
            *last = Some(std::time::Instant::now());
            tracing::warn!(checkpoint = %name, "{WANTS_AT_ONCE_MAX} requests already wait: more are answered at once (want, unlink: timeout; forward: busy); logged once a second");
        }
        return Ok(busy);
    };
    // The asker hanging up ends the wait (a read finds the end of its
    // stream).
    stream.set_nonblocking(true)?;
    let gone = || match (&*stream).read(&mut [0u8]) {
        Ok(0) => true,
        // Bytes after the request: ignored.
        Ok(_) => false,
        Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
    };
    let answer = run(&gone);
    stream.set_nonblocking(false)?;
    Ok(answer)
}

/// Asks the daemon answering on `control` for its status.
pub fn fetch_status(control: &Path) -> Result<NodeStatus, String> {
    let shown = control.display();
    let mut stream = UnixStream::connect(control).map_err(|e| {
        format!("no daemon answers on {shown} ({e}): is `ckpt daemon` running for this directory?")
    })?;
    stream
        .set_read_timeout(Some(CLIENT_TIMEOUT))
        .and_then(|()| stream.write_all(b"status\n"))
        .map_err(|e| format!("{shown}: {e}"))?;
    let mut text = String::new();
    stream
        .take(16 << 20)
        .read_to_string(&mut text)
        .map_err(|e| format!("{shown}: {e}"))?;
    serde_json::from_str(&text).map_err(|_| format!("{shown}: unexpected answer {:?}", text.trim()))
}

// ---------------------------------------------------------------------------
// Metrics

/// Answers HTTP GETs of /metrics (or /) with the Prometheus text format.
fn serve_metrics(
    listener: &TcpListener,
    stop: &std::sync::atomic::AtomicBool,
    status: &dyn Fn() -> Option<NodeStatus>,
) {
    if let Err(e) = listener.set_nonblocking(true) {
        tracing::warn!("metrics: {e}");
        return;
    }
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, _)) => {
                let _ = answer_metrics(stream, status);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => {
                tracing::warn!("metrics: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

fn answer_metrics(
    stream: std::net::TcpStream,
    status: &dyn Fn() -> Option<NodeStatus>,
) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_write_timeout(Some(CLIENT_TIMEOUT))?;
    // The request line and headers, up to a bound.
    let request = read_request(&stream, b"\r\n\r\n", REQUEST_BYTES_MAX)?;
    let line = request.split(|&b| b == b'\r').next().unwrap_or(&[]);
    let path = line.split(|&b| b == b' ').nth(1).unwrap_or(&[]);
    let get = line.starts_with(b"GET ");
    let (code, body) = match (get, path, status()) {
        (true, b"/metrics" | b"/", Some(s)) => ("200 OK", prometheus(&s)),
        (true, b"/metrics" | b"/", None) => ("503 Service Unavailable", "stopping\n".into()),
        (true, _, _) => ("404 Not Found", "try /metrics\n".into()),
        (false, _, _) => ("405 Method Not Allowed", "GET only\n".into()),
    };
    let mut out = &stream;
    write!(
        out,
        "HTTP/1.1 {code}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// A label value, escaped as the text format wants.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The status in the Prometheus text format.
pub fn prometheus(s: &NodeStatus) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, rows: Vec<(String, String)>| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, value) in rows {
            let _ = writeln!(out, "{name}{labels} {value}");
        }
    };
    let node = format!(
        "{{node=\"{}\",name=\"{}\",backend=\"{}\"}}",
        s.node,
        label(&s.name),
        s.backend
    );
    metric(
        "ckpt_node_info",
        "gauge",
        "The node daemon: its id, name and transport.",
        vec![(node, "1".into())],
    );
    metric(
        "ckpt_uptime_seconds",
        "gauge",
        "Since the daemon started.",
        vec![(String::new(), format!("{:.3}", s.uptime.as_secs_f64()))],
    );
    metric(
        "ckpt_auth_failures_total",
        "counter",
        "Connections refused because the peer did not prove it holds the cluster key.",
        vec![(String::new(), s.auth_failures.to_string())],
    );
    metric(
        "ckpt_refused_links_total",
        "counter",
        "Incoming links refused for another reason (stranger, held as primary, too many).",
        vec![(String::new(), s.refused.to_string())],
    );
    metric(
        "ckpt_quorate",
        "gauge",
        "1 while this node's partition is quorate (static membership: always).",
        vec![(String::new(), u64::from(s.membership.quorate).to_string())],
    );
    metric(
        "ckpt_fenced",
        "gauge",
        "1 while this node holds its copies fenced (no writes, no promotion).",
        vec![(String::new(), u64::from(s.membership.fenced).to_string())],
    );
    metric(
        "ckpt_members",
        "gauge",
        "Members of the daemons' group, this node included (corosync membership).",
        vec![(String::new(), s.membership.members.len().to_string())],
    );
    let peers = |f: fn(&ckpt::node::PeerStatus) -> usize| {
        s.peers
            .iter()
            .map(|p| {
                let l = format!("{{peer=\"{}\",name=\"{}\"}}", p.node, label(&p.name));
                (l, f(p).to_string())
            })
            .collect()
    };
    metric(
        "ckpt_peer_links",
        "gauge",
        "Links with the peer.",
        peers(|p| p.links),
    );
    metric(
        "ckpt_peer_connected_links",
        "gauge",
        "Connected links with the peer.",
        peers(|p| p.linked),
    );
    // `None`: not known (the lag of a following link that is down): no sample.
    type Field = fn(&ckpt::node::LinkStatus) -> Option<u64>;
    let per_link: [(&str, &str, &str, Field); 7] = [
        (
            "ckpt_link_up",
            "gauge",
            "1 while the link is connected.",
            |l| Some(u64::from(l.state.is_connected())),
        ),
        (
            "ckpt_link_held_seq",
            "gauge",
            "The replica holds every frame through this one.",
            |l| Some(l.held),
        ),
        (
            "ckpt_link_lag_frames",
            "gauge",
            "Frames the replica lacks.",
            |l| l.lag,
        ),
        ("ckpt_link_term", "gauge", "The term.", |l| {
            Some(u64::from(l.term))
        }),
        (
            "ckpt_link_frames_total",
            "counter",
            "Frames shipped or applied.",
            |l| Some(l.frames),
        ),
        (
            "ckpt_link_snapshots_total",
            "counter",
            "Snapshots sent or installed.",
            |l| Some(l.snapshots),
        ),
        (
            "ckpt_link_connects_total",
            "counter",
            "Connections made.",
            |l| Some(l.connects),
        ),
    ];
    for (name, kind, help, f) in per_link {
        let rows = s
            .links
            .iter()
            .filter_map(|l| {
                let value = f(l)?;
                let labels = format!(
                    "{{checkpoint=\"{}\",role=\"{}\",peer=\"{}\"}}",
                    label(&l.checkpoint),
                    l.role.as_str(),
                    l.peer
                );
                Some((labels, value.to_string()))
            })
            .collect();
        metric(name, kind, help, rows);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> DaemonArgs {
        DaemonArgs::default()
    }

    #[test]
    fn flags_and_files_make_settings_and_bad_ones_say_why() {
        let d = tempfile::tempdir().unwrap();
        let config = Config::with_dir(d.path());
        let file = d.path().join("ckptd.toml");
        std::fs::write(
            &file,
            "node = 1\nname = \"alpha\"\nlisten = \"127.0.0.1:0\"\nsilence_ms = 900\n\
             [[peer]]\nnode = 2\naddress = \"127.0.0.1:7401\"\n\
             [[placement]]\nprefix = \"safCkpt=billing\"\nnodes = [2]\n",
        )
        .unwrap();
        let a = DaemonArgs {
            config: Some(file.clone()),
            ..args()
        };
        let s = a.settings(&config, None).unwrap();
        assert_eq!((s.node.node, s.node.name.as_str()), (1, "alpha"));
        assert_eq!(s.node.peers.len(), 1);
        assert_eq!(s.node.peers[0].name, "node2");
        assert_eq!(s.node.link.link.silence_ns, 900_000_000);
        assert_eq!(s.control, d.path().join(CONTROL_NAME));
        assert_eq!(
            s.node.placement,
            [Placement {
                prefix: b"safCkpt=billing".to_vec(),
                nodes: vec![2]
            }]
        );
        // Flags win over the file.
        let a = DaemonArgs {
            config: Some(file.clone()),
            node: Some(3),
            peers: vec!["4:delta=127.0.0.1:7404".into()],
            ..args()
        };
        let s = a.settings(&config, None).unwrap();
        assert_eq!(s.node.node, 3);
        assert_eq!(
            (s.node.peers[0].node, s.node.peers[0].name.as_str()),
            (4, "delta")
        );
        // Bad input says what is wrong.
        let bad = |text: &str| {
            std::fs::write(&file, text).unwrap();
            let a = DaemonArgs {
                config: Some(file.clone()),
                ..args()
            };
            a.settings(&config, None).err().unwrap()
        };
        assert!(bad("node = 1\nlisten = \"127.0.0.1:0\"\nport = 3\n").contains("unknown field"));
        assert!(bad("listen = \"127.0.0.1:0\"\n").contains("no node id"));
        assert!(bad("node = 1\nlisten = \"nowhere\"\n").contains("listen address"));
        if cfg!(feature = "corosync") {
            let s = DaemonArgs {
                membership: Some("corosync".into()),
                node: Some(1),
                ..args()
            }
            .settings(&config, None)
            .unwrap();
            assert_eq!(
                s.node.membership,
                Membership::Corosync {
                    group: "ckpt".into()
                }
            );
        } else {
            assert!(
                bad("node = 1\nmembership = \"corosync\"\n").contains("without corosync support")
            );
        }
        assert!(bad("node = 1\nmembership = \"raft\"\n").contains("expected \"static\" or"));
        assert!(bad("node = 1\nheartbeat_ms = 600\n").contains("twice"));
        assert!(bad("node = 1\nscan_ms = 0\n").contains("above 0"));
        assert!(bad("node = 1\nlog_bytes = 100000\n").contains("power of two"));
        assert!(bad("node = 1\nencrypt = true\n").contains("needs a key file"));
        assert!(
            bad("node = 1\n[[placement]]\nprefix = \"a\"\nnodes = [2147483648]\n")
                .contains("above")
        );
        assert!(bad("node = 1\n[[placement]]\nnodes = [2]\n").contains("prefix"));
        assert!(
            bad("node = 1\n[[peer]]\nnode = 1\naddress = \"127.0.0.1:1\"\n")
                .contains("this node's id")
        );
        let flag = |p: &str| {
            DaemonArgs {
                node: Some(1),
                peers: vec![p.into()],
                ..args()
            }
            .settings(&config, None)
            .err()
            .unwrap()
        };
        assert!(flag("2").contains("expected ID=HOST:PORT"));
        assert!(flag("x=127.0.0.1:1").contains("expected ID=HOST:PORT"));
        assert!(flag("2:=127.0.0.1:1").contains("expected ID=HOST:PORT"));
    }

    #[test]
    fn the_example_configuration_in_dist_is_valid() {
        let text = include_str!("../../dist/ckptd.toml");
        let file: FileConfig = toml::from_str(text).unwrap();
        assert_eq!((file.node, file.peer.len()), (Some(1), 1));
        // Everything but the key file (not on this machine) and the peer's
        // host name (not resolvable here) makes settings.
        let d = tempfile::tempdir().unwrap();
        let local = text
            .replace("key_file = \"/etc/ckpt/cluster.key\"\n", "")
            .replace("beta.example:7400", "127.0.0.1:7400")
            .replace("127.0.0.1:9464", "127.0.0.1:0");
        let path = d.path().join("ckptd.toml");
        std::fs::write(&path, local).unwrap();
        let a = DaemonArgs {
            config: Some(path),
            ..args()
        };
        let s = a.settings(&Config::with_dir(d.path()), None).unwrap();
        assert_eq!(s.node.segments.dir, std::path::Path::new("/dev/shm/ckpt"));
        assert_eq!(s.node.peers[0].name, "beta");
    }

    #[test]
    fn labels_are_escaped() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
