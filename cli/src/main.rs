//! `ckpt`: the failover demo, the operator CLI and the bench command.

use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use ckpt::Config;
use ckpt_cli::demo::{self, DemoOptions, WorkerOptions};
use ckpt_cli::inspect::{self, CheckpointInfo, SectionInfo};
use ckpt_core::CheckpointName;
use clap::{Parser, Subcommand};

/// The largest section the demo takes: each of its processes holds a copy.
const DEMO_SECTION_BYTES_MAX: u64 = 64 << 20;

/// ckpt: SA Forum checkpoints in shared memory.
#[derive(Parser)]
#[command(name = "ckpt", version, about, long_about = None)]
struct Cli {
    /// Segment directory (default: $CKPT_DIR, else /dev/shm/ckpt; for demo
    /// and bench: $CKPT_DIR, else a private scratch directory they remove).
    #[arg(long, global = true, value_name = "DIR")]
    dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the csa103 failover demo: an active and a standby process, the
    /// active SIGKILLed repeatedly, the standby taking over with the state.
    Demo {
        /// How many times to kill the active.
        #[arg(long, default_value_t = 5)]
        kills: u32,
        /// Milliseconds between kills.
        #[arg(long, default_value_t = 400)]
        kill_every_ms: u64,
        /// Total run length in milliseconds (sets --kills from --kill-every-ms).
        #[arg(long)]
        run_ms: Option<u64>,
        /// Size of the checkpointed section in bytes: 8 to 64 MiB (every
        /// process of the demo holds a copy of it in memory).
        #[arg(long, default_value_t = 8,
              value_parser = clap::value_parser!(u64).range(8..=DEMO_SECTION_BYTES_MAX))]
        section_bytes: u64,
        /// Microseconds between two writes of the active.
        #[arg(long, default_value_t = 20)]
        write_interval_us: u64,
        /// 2: the demo across two nodes (two node daemons on loopback ports,
        /// one segment directory each): the active process killed, then the
        /// active node lost, then the link cut.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=2))]
        nodes: u32,
        /// With --nodes 2: a synchronous checkpoint (WR_ALL_REPLICAS; a write
        /// returns once the other node holds it) instead of an asynchronous one.
        #[arg(long)]
        sync: bool,
        /// With --nodes 2: milliseconds the active writes between two faults.
        #[arg(long, default_value_t = 1000)]
        phase_ms: u64,
        /// With --nodes 2: loopback ports even as root (by default, root
        /// runs each node's daemon in its own network namespace).
        #[arg(long)]
        loopback: bool,
    },
    /// List checkpoints: attributes, sections, memory, openers, retention, active replica, role (primary or replica) and last frame.
    List {
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// List the sections of one checkpoint.
    Sections {
        /// Checkpoint name (any bytes but NUL).
        name: OsString,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Dump one section as hex and text.
    Dump {
        /// Checkpoint name (any bytes but NUL).
        name: OsString,
        /// Section id: as `sections` shows it (text, 0x-prefixed hex, or
        /// `<default>`), or "" for the default section.
        id: String,
        /// The id is given as hex bytes (only needed for a text id that
        /// starts with 0x).
        #[arg(long)]
        id_hex: bool,
        /// Print JSON ({"id", "version", "size_bytes", "data_hex"}).
        #[arg(long)]
        json: bool,
    },
    /// Unlink a checkpoint: the name is freed at once; openers keep it until they close.
    Unlink {
        /// Checkpoint name (any bytes but NUL).
        name: OsString,
        /// Drop this host's replica of it instead (one whose primary is gone
        /// for good, or was unlinked while this host was unreachable):
        /// only here, nothing is sent.
        #[arg(long)]
        replica: bool,
    },
    /// Run the node daemon in the foreground until SIGTERM or SIGINT: ship
    /// this host's checkpoints to the configured peers, keep replicas of
    /// theirs, answer `ckpt peers`.
    Daemon {
        #[command(flatten)]
        args: ckpt_cli::daemon::DaemonArgs,
    },
    /// Show the node daemon's peers and links: per checkpoint and peer, the
    /// role, state, frames held, lag, term and the transport.
    Peers {
        /// The daemon's control socket (default: .ckptd.sock in the segment
        /// directory).
        #[arg(long, value_name = "PATH")]
        control: Option<PathBuf>,
        /// One JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Promote this host's replica of a checkpoint to its primary, in a new
    /// term (failover by an operator or a cluster manager): local writers
    /// write it from then on, this host's daemon ships it, and the old
    /// primary becomes a replica once its daemon hears of the new term.
    Promote {
        /// Checkpoint name (any bytes but NUL).
        name: OsString,
        /// This host's node id (default: $CKPT_NODE_ID, else 0).
        #[arg(long)]
        node: Option<u32>,
        /// Promote at once, even if the replica lacks frames a primary that
        /// is still heard from shipped (otherwise it waits up to 5 s for
        /// them).
        #[arg(long)]
        force: bool,
    },
    /// Serve one checkpoint of this host to a replica host (`ckpt follow`
    /// there) on an address, until SIGTERM or SIGINT.
    Ship {
        /// Checkpoint name (any bytes but NUL).
        name: OsString,
        /// Address to listen on (port 0: any; the chosen one is printed).
        #[arg(long, value_name = "ADDR")]
        listen: std::net::SocketAddr,
        /// The replica host's node id (its acknowledgements release
        /// synchronous writers here).
        #[arg(long, default_value_t = 2)]
        replica_node: u32,
        #[command(flatten)]
        link: ckpt_cli::replicate::LinkArgs,
    },
    /// Keep this host's replica of a checkpoint up to date from its primary's
    /// `ckpt ship`, reconnecting after a lost link, until SIGTERM or SIGINT.
    Follow {
        /// Checkpoint name (any bytes but NUL).
        name: OsString,
        /// The primary's `ckpt ship` address.
        #[arg(long, value_name = "ADDR")]
        from: std::net::SocketAddr,
        #[command(flatten)]
        link: ckpt_cli::replicate::LinkArgs,
    },
    /// Run the local benchmarks beside their baselines and print the ratios.
    Bench {
        /// A shorter run (seconds instead of a minute; 256 MiB takeover).
        #[arg(long)]
        quick: bool,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
        /// Only these groups of scenarios (comma-separated): local, c,
        /// visibility, takeover, iterate, apply, catch-up, replication.
        #[arg(long, value_name = "GROUPS", value_delimiter = ',')]
        only: Vec<String>,
    },
    /// The standby process of `ckpt bench` (started by it).
    #[command(hide = true)]
    BenchStandby {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// A worker of the demo (started by `ckpt demo`).
    #[command(hide = true)]
    DemoWorker {
        #[arg(long)]
        section_bytes: usize,
        #[arg(long)]
        write_interval_us: u64,
        #[arg(long, default_value_t = 0)]
        node: u32,
        #[arg(long, default_value = demo::CONTROL_CHECKPOINT)]
        control: String,
        #[arg(long)]
        sync: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut config = Config::from_env();
    // --dir, else $CKPT_DIR: the directory asked for (demo and bench use a
    // private scratch directory when none is).
    let asked = cli.dir.or_else(|| {
        std::env::var_os(ckpt_shm::segment::ENV_DIR)
            .filter(|d| !d.is_empty())
            .map(PathBuf::from)
    });
    if let Some(dir) = &asked {
        config.dir = dir.clone();
    }
    match run(cli.command, config, asked) {
        Ok(code) => code,
        // The reader went away (`ckpt list | head -1`): nothing to report.
        Err(Failure::OutputClosed) => ExitCode::SUCCESS,
        Err(Failure::Message(message)) => {
            eprintln!("ckpt: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Why a command stopped early.
enum Failure {
    /// Standard output was closed by its reader.
    OutputClosed,
    /// An error to report.
    Message(String),
}

impl From<String> for Failure {
    fn from(message: String) -> Failure {
        Failure::Message(message)
    }
}

fn run(command: Cmd, config: Config, dir: Option<PathBuf>) -> Result<ExitCode, Failure> {
    let mut out = std::io::stdout().lock();
    match command {
        Cmd::Demo {
            nodes: 2,
            sync,
            phase_ms,
            section_bytes,
            write_interval_us,
            loopback,
            ..
        } => {
            let opts = demo::cluster::ClusterOptions {
                root: dir,
                sync,
                phase: Duration::from_millis(phase_ms.max(1)),
                section_bytes: section_bytes as usize,
                write_interval: Duration::from_micros(write_interval_us),
                netns: !loopback,
            };
            let exe =
                std::env::current_exe().map_err(|e| format!("cannot find my own binary: {e}"))?;
            let verdict = demo::cluster::run(&opts, &exe, &mut out)?;
            Ok(if verdict.passed() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Cmd::Demo {
            kills,
            kill_every_ms,
            run_ms,
            section_bytes,
            write_interval_us,
            ..
        } => {
            let kill_every = Duration::from_millis(kill_every_ms.max(1));
            let kills = match run_ms {
                Some(ms) => (ms / kill_every_ms.max(1)).max(1) as u32,
                None => kills,
            };
            let opts = DemoOptions {
                dir,
                kills,
                kill_every,
                section_bytes: section_bytes as usize,
                write_interval: Duration::from_micros(write_interval_us),
            };
            let exe =
                std::env::current_exe().map_err(|e| format!("cannot find my own binary: {e}"))?;
            let verdict = demo::run(&opts, &exe, &mut out)?;
            Ok(if verdict.passed() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Cmd::DemoWorker {
            section_bytes,
            write_interval_us,
            node,
            control,
            sync,
        } => {
            let opts = WorkerOptions {
                dir: config.dir,
                node,
                control,
                sync,
                section_bytes,
                write_interval: Duration::from_micros(write_interval_us),
            };
            Ok(ExitCode::from(demo::worker_main(&opts) as u8))
        }
        Cmd::Ship {
            name,
            listen,
            replica_node,
            link,
        } => {
            let name = checkpoint_name(&name)?;
            let link = link.prepare()?;
            ckpt_cli::replicate::run_ship(&config, &name, (listen, replica_node), &link)?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Daemon { args } => {
            let settings = args.settings(&config, dir.as_deref())?;
            ckpt_cli::daemon::run(settings)?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Promote { name, node, force } => {
            let name = checkpoint_name(&name)?;
            let node = node.unwrap_or(config.node_id);
            let rw = ckpt_core::OpenFlags::READ | ckpt_core::OpenFlags::WRITE;
            let segment = ckpt_shm::Segment::open_for_link(&config, &name, rw)
                .map_err(|e| open_message(&name, &config, e))?;
            let shown = shown(name.as_bytes());
            if !segment.is_replica() {
                return Err(format!(
                    "'{shown}' is a primary here already (term {}): nothing to promote",
                    segment.current_term()
                )
                .into());
            }
            use ckpt_shm::ops::checkpoint::{ActiveFail, PromoteFail};
            let promoted = if force {
                segment.promote(node).map_err(PromoteFail::Active)
            } else {
                segment.promote_caught_up(node, Duration::from_secs(5))
            };
            let term = promoted.map_err(|e| match e {
                PromoteFail::Active(ActiveFail::InvalidNode) => {
                    format!("node id {node} is above {}", ckpt_core::frame::NODE_ID_MAX)
                }
                PromoteFail::Active(ActiveFail::Claim(ckpt_shm::ops::ClaimFail::NoQuorum)) => {
                    "this node is fenced: its daemon says its partition of the cluster has no \
                     quorum, and a node without quorum never becomes active (not even with --force)"
                        .to_string()
                }
                PromoteFail::Active(ActiveFail::Claim(_)) => {
                    "the replica is busy (its daemon is applying frames): try again".to_string()
                }
                PromoteFail::Behind { frames } => format!(
                    "the replica still lacks {frames} frames its primary, still alive, shipped: \
                     not promoted (wait for it to catch up, or --force)"
                ),
            })?;
            writeln!(
                out,
                "promoted '{shown}': the primary is here now, node {node} its active replica, term {term} (it held frame {})",
                segment.last_seq()
            )
            .map_err(io)?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Peers { control, json } => {
            let control =
                control.unwrap_or_else(|| config.dir.join(ckpt_cli::daemon::CONTROL_NAME));
            let status = ckpt_cli::daemon::fetch_status(&control)?;
            if json {
                let line = serde_json::to_string(&status).expect("serializable");
                writeln!(out, "{line}").map_err(io)?;
            } else {
                print_peers(&mut out, &status).map_err(io)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Follow { name, from, link } => {
            let name = checkpoint_name(&name)?;
            let link = link.prepare()?;
            ckpt_cli::replicate::run_follow(&config, &name, from, &link)?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Bench { quick, json, only } => {
            let exe =
                std::env::current_exe().map_err(|e| format!("cannot find my own binary: {e}"))?;
            // A private directory unless --dir or $CKPT_DIR names one;
            // removed afterwards.
            let private = dir.is_none();
            let opts = ckpt_cli::bench::BenchOptions {
                dir: dir.unwrap_or_else(|| {
                    PathBuf::from(format!("/dev/shm/ckpt-bench-{}", std::process::id()))
                }),
                quick,
                standby_cmd: Some(vec![exe.into(), "bench-standby".into()]),
                only,
            };
            let mut closed = false;
            let mut progress = |row: &ckpt_cli::bench::BenchRow| {
                if json {
                    // A closed pipe stops the run (and the cleanup below runs).
                    closed = writeln!(out, "{}", ckpt_cli::bench::to_json_line(row))
                        .and_then(|()| out.flush())
                        .is_err();
                } else {
                    eprintln!("  measured: {}", row.scenario);
                }
                !closed
            };
            let rows = ckpt_cli::bench::run(&opts, &mut progress);
            if private {
                let _ = std::fs::remove_dir_all(&opts.dir);
            }
            let rows = rows?;
            if closed {
                return Err(Failure::OutputClosed);
            }
            if !json {
                ckpt_cli::bench::print_table(&rows, &mut out).map_err(io)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::BenchStandby { args } => {
            Ok(ExitCode::from(ckpt_cli::bench::standby_main(&args) as u8))
        }
        Cmd::List { json } => {
            let listing = inspect::list(&config)
                .map_err(|e| format!("cannot read {}: {e}", config.dir.display()))?;
            if json {
                let lines = listing.checkpoints.iter().map(serde_json::to_string);
                let lines = lines
                    .chain(listing.refused.iter().map(serde_json::to_string))
                    .chain(listing.removed.iter().map(serde_json::to_string));
                for line in lines {
                    writeln!(out, "{}", line.expect("serializable")).map_err(io)?;
                }
            } else {
                print_list(&mut out, &config, &listing.checkpoints).map_err(io)?;
                for r in &listing.refused {
                    writeln!(out, "refused {}: {}", r.path.display(), r.error).map_err(io)?;
                }
                for r in &listing.removed {
                    let name = shown(r.removed.as_bytes());
                    writeln!(out, "removed '{name}': {}", r.why).map_err(io)?;
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Sections { name, json } => {
            let name = checkpoint_name(&name)?;
            let (mapped, _) =
                inspect::open(&config, &name).map_err(|e| open_message(&name, &config, e))?;
            let sections = inspect::sections(&mapped);
            if json {
                for s in &sections {
                    writeln!(out, "{}", serde_json::to_string(s).expect("serializable"))
                        .map_err(io)?;
                }
            } else {
                print_sections(&mut out, &sections).map_err(io)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Dump {
            name,
            id,
            id_hex,
            json,
        } => {
            let name = checkpoint_name(&name)?;
            // The id as given, then as `sections` shows ids it cannot print
            // as text (0x-prefixed hex) or the default section (<default>).
            let candidates: Vec<Vec<u8>> = if id_hex {
                vec![parse_hex(&id)
                    .ok_or_else(|| format!("'{}' is not hex bytes", shown(id.as_bytes())))?]
            } else {
                let mut c = vec![id.clone().into_bytes()];
                c.extend(id.starts_with("0x").then(|| parse_hex(&id)).flatten());
                if id == "<default>" {
                    c.push(Vec::new());
                }
                c
            };
            let (mapped, _) =
                inspect::open(&config, &name).map_err(|e| open_message(&name, &config, e))?;
            let (data, version) = candidates
                .iter()
                .find_map(|c| inspect::read_section(&mapped, c))
                .ok_or_else(|| {
                    format!(
                        "checkpoint '{}' has no section '{}' (`ckpt sections` lists them)",
                        shown(name.as_bytes()),
                        shown(id.as_bytes())
                    )
                })?;
            let name = shown(name.as_bytes());
            if json {
                let hex = ckpt_core::control::hex(&data);
                let v = serde_json::json!({"id": id, "version": version, "size_bytes": data.len(), "data_hex": hex});
                writeln!(out, "{v}").map_err(io)?;
            } else {
                writeln!(
                    out,
                    "section '{id}' of '{name}': {} bytes, version {version}",
                    data.len()
                )
                .map_err(io)?;
                hexdump(&mut out, &data).map_err(io)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Unlink {
            name,
            replica: true,
        } => {
            let name = checkpoint_name(&name)?;
            let rw = ckpt_core::OpenFlags::READ | ckpt_core::OpenFlags::WRITE;
            let segment = ckpt_shm::Segment::open_for_link(&config, &name, rw)
                .map_err(|e| open_message(&name, &config, e))?;
            let shown = shown(name.as_bytes());
            if !segment.drop_replica() {
                return Err(format!(
                    "'{shown}' is a primary here, not a replica: `ckpt unlink` without --replica unlinks it everywhere"
                )
                .into());
            }
            writeln!(out, "dropped this host's replica of '{shown}'").map_err(io)?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Unlink { name, .. } => {
            let name = checkpoint_name(&name)?;
            let shown = shown(name.as_bytes());
            ckpt::Service::with_config(config.clone())
                .unlink(name.as_bytes())
                .map_err(|e| format!("cannot unlink '{shown}' in {}: {e}", config.dir.display()))?;
            writeln!(out, "unlinked '{shown}'").map_err(io)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn io(e: std::io::Error) -> Failure {
    match e.kind() {
        std::io::ErrorKind::BrokenPipe => Failure::OutputClosed,
        _ => Failure::Message(format!("cannot write output: {e}")),
    }
}

fn open_message(name: &CheckpointName, config: &Config, e: ckpt::OpenError) -> String {
    let name = shown(name.as_bytes());
    match e {
        ckpt::OpenError::NotExist => format!("no checkpoint '{name}' in {}", config.dir.display()),
        other => format!("cannot open '{name}' in {}: {other}", config.dir.display()),
    }
}

/// A name or id from the command line or a segment, for a message: lossy
/// UTF-8, control characters escaped, at most 64 characters.
fn shown(bytes: &[u8]) -> String {
    const SHOWN_MAX: usize = 64;
    let text: String = String::from_utf8_lossy(bytes).escape_debug().collect();
    match text.char_indices().nth(SHOWN_MAX) {
        Some((cut, _)) => format!("{}... ({} bytes)", &text[..cut], bytes.len()),
        None => text,
    }
}

/// A checkpoint name from the command line (any bytes but NUL), or why not.
fn checkpoint_name(arg: &OsString) -> Result<CheckpointName, String> {
    use std::os::unix::ffi::OsStrExt;
    CheckpointName::new(arg.as_bytes())
        .map_err(|e| format!("invalid checkpoint name '{}': {e}", shown(arg.as_bytes())))
}

fn parse_hex(s: &str) -> Option<Vec<u8>> {
    let s = s.strip_prefix("0x").unwrap_or(s);
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

fn duration_ns(ns: i64) -> String {
    match ns {
        i64::MAX => "forever".into(),
        ns if ns % 1_000_000_000 == 0 => format!("{}s", ns / 1_000_000_000),
        ns => format!("{:.3}s", ns as f64 / 1e9),
    }
}

/// A time (ns since the epoch) as local time to the millisecond, with the
/// zone's offset: `2026-11-29 22:15:03.212 +0100`. JSON output keeps the ns.
fn local_time(ns: i64) -> String {
    let secs = ns.div_euclid(1_000_000_000);
    let millis = ns.rem_euclid(1_000_000_000) / 1_000_000;
    let t = secs as libc::time_t;
    // SAFETY: all-zero bytes are a valid `tm`; localtime_r fills it from `t`
    // (both ours), and strftime writes at most `buf.len()` bytes into `buf`
    // from a NUL-terminated format.
    let (ok, date, zone) = unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        let ok = !libc::localtime_r(&t, &mut tm).is_null();
        let mut date = [0u8; 32];
        let mut zone = [0u8; 16];
        let n = libc::strftime(
            date.as_mut_ptr().cast(),
            date.len(),
            c"%Y-%m-%d %H:%M:%S".as_ptr(),
            &tm,
        );
        let z = libc::strftime(zone.as_mut_ptr().cast(), zone.len(), c"%z".as_ptr(), &tm);
        (ok && n > 0 && z > 0, date[..n].to_vec(), zone[..z].to_vec())
    };
    if !ok {
        return format!("{:.3}s since the epoch", ns as f64 / 1e9);
    }
    format!(
        "{}.{millis:03} {}",
        String::from_utf8_lossy(&date),
        String::from_utf8_lossy(&zone)
    )
}

fn print_list(
    out: &mut dyn Write,
    config: &Config,
    list: &[CheckpointInfo],
) -> std::io::Result<()> {
    if list.is_empty() {
        return writeln!(out, "no checkpoints in {}", config.dir.display());
    }
    let rows: Vec<[String; 9]> = list
        .iter()
        .map(|c| {
            let openers = if c.openers.is_empty() {
                match c.last_close_ns {
                    Some(_) => "0 (closed)".to_string(),
                    None => "0".to_string(),
                }
            } else {
                let pids: Vec<String> = c
                    .openers
                    .iter()
                    .map(|o| match o.other_namespace {
                        // A pid of another PID namespace, marked as such.
                        true => format!("{}@pidns:{}:{}", o.pid, o.pid_ns, o.mode),
                        false => format!("{}:{}", o.pid, o.mode),
                    })
                    .collect();
                format!("{} ({})", c.openers.len(), pids.join(","))
            };
            [
                c.name.clone(),
                c.flags.clone(),
                format!("{}/{}", c.sections, c.sections_max),
                format!(
                    "{} / {}",
                    bytes(c.memory_used_bytes),
                    bytes(c.checkpoint_bytes)
                ),
                format!("{} x {}", bytes(c.section_bytes_max), c.sections_max),
                openers,
                duration_ns(c.retention_ns),
                c.active_replica.as_ref().map_or("none".into(), |a| {
                    format!("node {} term {} (pid {})", a.node, a.term, a.pid)
                }),
                format!(
                    "{}{} at frame {}",
                    c.role,
                    if c.fenced { " (fenced)" } else { "" },
                    c.last_seq
                ),
            ]
        })
        .collect();
    let header = [
        "NAME",
        "FLAGS",
        "SECTIONS",
        "MEMORY",
        "MAX SECTION",
        "OPENERS",
        "RETENTION",
        "ACTIVE REPLICA",
        "LOG",
    ];
    print_table(out, &header, &rows)
}

fn print_sections(out: &mut dyn Write, sections: &[SectionInfo]) -> std::io::Result<()> {
    if sections.is_empty() {
        return writeln!(out, "no sections");
    }
    let rows: Vec<[String; 5]> = sections
        .iter()
        .map(|s| {
            [
                s.id.clone(),
                bytes(s.size_bytes),
                s.version.to_string(),
                s.expiration_ns.map_or("never".into(), local_time),
                local_time(s.last_update_ns),
            ]
        })
        .collect();
    print_table(
        out,
        &["ID", "SIZE", "VERSION", "EXPIRES", "LAST UPDATE"],
        &rows,
    )
}

fn print_peers(out: &mut dyn Write, s: &ckpt::node::NodeStatus) -> std::io::Result<()> {
    writeln!(
        out,
        "node {} ({}) on {}, transport {}, up {}; authentication failures {}, links refused {}",
        s.node,
        s.name,
        s.listen,
        s.backend,
        duration_ns(s.uptime.as_nanos() as i64),
        s.auth_failures,
        s.refused
    )?;
    if !s.offers_settled {
        writeln!(
            out,
            "starting: peers may still offer what they hold (an open of a checkpoint not here waits for it)"
        )?;
    }
    let m = &s.membership;
    if m.mode == "static" {
        writeln!(out, "membership static: the configured peers (no quorum)")?;
    } else {
        writeln!(
            out,
            "membership {}: members {:?}, {}{}",
            m.mode,
            m.members,
            if m.quorate { "quorate" } else { "NOT quorate" },
            if m.fenced {
                "; this node's copies are FENCED (no writes, no promotion)"
            } else {
                ""
            }
        )?;
    }
    let peers: Vec<[String; 5]> = s
        .peers
        .iter()
        .map(|p| {
            [
                p.node.to_string(),
                p.name.clone(),
                p.address.to_string(),
                p.links.to_string(),
                p.linked.to_string(),
            ]
        })
        .collect();
    writeln!(out)?;
    print_table(
        out,
        &["PEER", "NAME", "ADDRESS", "LINKS", "CONNECTED"],
        &peers,
    )?;
    writeln!(out)?;
    if s.links.is_empty() {
        return writeln!(out, "no links");
    }
    let links: Vec<[String; 10]> = s
        .links
        .iter()
        .map(|l| {
            [
                shown(l.checkpoint.as_bytes()),
                l.role.as_str().to_string(),
                l.peer.to_string(),
                l.state.as_str().to_string(),
                l.held.to_string(),
                l.lag.map_or_else(|| "?".into(), |lag| lag.to_string()),
                l.term.to_string(),
                l.frames.to_string(),
                l.snapshots.to_string(),
                l.last.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    print_table(
        out,
        &[
            "CHECKPOINT",
            "ROLE",
            "PEER",
            "STATE",
            "HELD",
            "LAG",
            "TERM",
            "FRAMES",
            "SNAPSHOTS",
            "LAST",
        ],
        &links,
    )
}

fn print_table<const N: usize>(
    out: &mut dyn Write,
    header: &[&str; N],
    rows: &[[String; N]],
) -> std::io::Result<()> {
    let mut widths = header.map(|h| h.chars().count());
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        cells
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    writeln!(out, "{}", line(header.to_vec()))?;
    for row in rows {
        writeln!(out, "{}", line(row.iter().map(String::as_str).collect()))?;
    }
    Ok(())
}

fn hexdump(out: &mut dyn Write, data: &[u8]) -> std::io::Result<()> {
    for (i, chunk) in data.chunks(16).enumerate() {
        let hex: Vec<String> = chunk.iter().map(|b| format!("{b:02x}")).collect();
        let text: String = chunk
            .iter()
            .map(|&b| {
                if b.is_ascii_graphic() || b == b' ' {
                    b as char
                } else {
                    '.'
                }
            })
            .collect();
        writeln!(out, "{:08x}  {:<47}  |{text}|", i * 16, hex.join(" "))?;
    }
    Ok(())
}
