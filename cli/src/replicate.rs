//! `ckpt ship` and `ckpt follow`: one checkpoint's replication link run by
//! hand, one process per end, until SIGTERM or SIGINT. `ship` serves the
//! checkpoint of this host's directory on an address (a link that ends is
//! followed by the next connection); `follow` keeps this host's replica up to
//! date from that address, reconnecting after a lost link. They print one
//! line per event on standard error. The node daemon (`ckpt daemon`) runs
//! the same links for every checkpoint and peer of its configuration.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ckpt::node::describe;
use ckpt::replication::{follow, ship, ClusterKey, LinkOptions};
use ckpt_core::{CheckpointName, OpenFlags};
use ckpt_shm::{Config, Segment};
use ckpt_transport::{Auto, Backend, Choice, Listener};

/// Backoff between two attempts to connect, at most.
const RETRY_MAX: Duration = Duration::from_secs(2);

/// What stops a command: SIGTERM or SIGINT.
pub fn stop_on_signals() -> Result<Arc<AtomicBool>, String> {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, stop.clone())
            .map_err(|e| format!("cannot handle signal {signal}: {e}"))?;
    }
    Ok(stop)
}

/// The transport `choice` names, with a line on what was chosen.
pub fn backend(choice: &str) -> Result<Auto, String> {
    let choice = Choice::parse(choice).ok_or_else(|| {
        format!(
            "--transport {choice:?}: expected {}",
            ckpt_transport::Choice::EXPECTED
        )
    })?;
    let (backend, fallback) = Auto::select(choice)?;
    match fallback {
        None => log(format_args!("transport: {}", backend.name())),
        Some(why) => log(format_args!("transport: {} ({why})", backend.name())),
    }
    Ok(backend)
}

fn log(what: std::fmt::Arguments<'_>) {
    eprintln!("ckpt: {what}");
}

/// The options `ckpt ship` and `ckpt follow` share.
#[derive(clap::Args)]
pub struct LinkArgs {
    /// auto (io_uring where the kernel allows it), io_uring or tcp.
    #[arg(long, default_value = "auto")]
    transport: String,
    /// A file holding the cluster key (at least 16 bytes, readable by its
    /// owner only): both ends prove they hold it before anything else.
    /// Without it, links are not authenticated.
    #[arg(long, value_name = "FILE")]
    key_file: Option<std::path::PathBuf>,
    /// Encrypt the link (ChaCha20-Poly1305 under keys derived from the
    /// cluster key at each connection; needs --key-file, on both ends).
    #[arg(long)]
    encrypt: bool,
}

/// What a link run by hand needs: the stop flag (set by SIGTERM and
/// SIGINT), the transport, and the links' options.
pub struct Link {
    stop: Arc<AtomicBool>,
    backend: Auto,
    opts: LinkOptions,
}

impl LinkArgs {
    /// Installs the signal handlers, chooses the transport and reads the key
    /// (each logged).
    pub fn prepare(&self) -> Result<Link, String> {
        Ok(Link {
            stop: stop_on_signals()?,
            backend: backend(&self.transport)?,
            opts: link_options(self.key_file.as_deref(), self.encrypt)?,
        })
    }
}

/// The links' options: events logged, the cluster key in `key_file` if
/// given ([`read_key`]), and encryption if asked (it needs the key).
pub fn link_options(key_file: Option<&Path>, encrypt: bool) -> Result<LinkOptions, String> {
    let logged = LinkOptions {
        on_event: Some(|e| log(format_args!("{e}"))),
        encrypt,
        ..LinkOptions::default()
    };
    if encrypt && key_file.is_none() {
        return Err(
            "--encrypt needs --key-file (the session keys come from the cluster key)".into(),
        );
    }
    let Some(path) = key_file else {
        log(format_args!(
            "links are not authenticated (no --key-file): use a trusted network only"
        ));
        return Ok(logged);
    };
    let key = read_key(path)?;
    log(format_args!(
        "links authenticated with the cluster key in {}{}",
        path.display(),
        if encrypt { ", and encrypted" } else { "" }
    ));
    Ok(LinkOptions {
        key: Some(key),
        ..logged
    })
}

/// The cluster key in `path`: at least [`ClusterKey::BYTES_MIN`] bytes, in a
/// regular file that only its owner can read or write.
pub fn read_key(path: &Path) -> Result<ClusterKey, String> {
    let shown = path.display();
    let meta = std::fs::metadata(path).map_err(|e| format!("key file {shown}: {e}"))?;
    if !meta.is_file() {
        return Err(format!("key file {shown}: not a regular file"));
    }
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(format!(
            "key file {shown}: others can read or write it (chmod 600 it)"
        ));
    }
    let bytes = std::fs::read(path).map_err(|e| format!("key file {shown}: {e}"))?;
    ClusterKey::new(&bytes).ok_or_else(|| {
        format!(
            "key file {shown}: {} bytes, at least {} needed",
            bytes.len(),
            ClusterKey::BYTES_MIN
        )
    })
}

/// Serves checkpoint `name` (of `config`'s directory) to the replica on
/// node `to.1` through address `to.0` until `link`'s stop flag is set.
pub fn run_ship(
    config: &Config,
    name: &CheckpointName,
    to: (SocketAddr, u32),
    link: &Link,
) -> Result<(), String> {
    let (listen, node) = to;
    let Link {
        stop,
        backend,
        opts,
    } = link;
    let primary = Segment::open_for_link(config, name, OpenFlags::READ)
        .map_err(|e| format!("{name}: {e}"))?;
    if primary.is_replica() {
        return Err(format!(
            "{name} is a replica here: only its primary ships it"
        ));
    }
    let listener = backend
        .listen(listen, opts.max_message)
        .map_err(|e| format!("listen on {listen}: {e}"))?;
    let at = listener.local_addr().map_err(|e| format!("listen: {e}"))?;
    log(format_args!("shipping {name} on {at}"));
    while !stop.load(Ordering::Relaxed) {
        let Some((mut conn, peer)) = listener
            .accept(Duration::from_millis(200))
            .map_err(|e| format!("accept: {e}"))?
        else {
            continue;
        };
        log(format_args!("replica connected from {peer}"));
        match ship(&primary, node, true, &mut conn, opts, stop) {
            Ok(ended) => log(format_args!("link to {peer} ended: {}", describe(ended))),
            Err(e) => log(format_args!("link to {peer} failed: {e}")),
        }
    }
    log(format_args!("stopped"));
    Ok(())
}

/// Follows checkpoint `name` from `from` into `config`'s directory until
/// `link`'s stop flag is set.
pub fn run_follow(
    config: &Config,
    name: &CheckpointName,
    from: SocketAddr,
    link: &Link,
) -> Result<(), String> {
    let Link {
        stop,
        backend,
        opts,
    } = link;
    let mut retry = Duration::from_millis(50);
    log(format_args!("following {name} from {from}"));
    while !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        match backend.connect(from, Duration::from_secs(2), opts.max_message) {
            Ok(mut conn) => match follow(config, name, &mut conn, opts, stop) {
                Ok((ended, replica)) => {
                    let held = replica.map_or(0, |r| r.last_seq());
                    log(format_args!(
                        "link ended: {} (the replica holds frame {held})",
                        describe(ended)
                    ));
                }
                Err(e) => log(format_args!("link failed: {e}")),
            },
            Err(e) => log(format_args!("cannot connect to {from}: {e}")),
        }
        // A link that lasted resets the backoff; quick failures double it.
        retry = if started.elapsed() > RETRY_MAX {
            Duration::from_millis(50)
        } else {
            (retry * 2).min(RETRY_MAX)
        };
        let until = Instant::now() + retry;
        while Instant::now() < until && !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    log(format_args!("stopped"));
    Ok(())
}
