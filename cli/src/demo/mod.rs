//! The csa103 failover demo: an active and a standby process on this host,
//! the active killed again and again, the standby taking over with the state.
//!
//! The supervisor plays the availability manager (AMF): it starts two worker
//! processes, assigns the active role through a small control checkpoint (the
//! workers sleep on it with a futex), SIGKILLs the active at intervals, reads
//! what the checkpoint holds after each kill, assigns the standby, and restarts
//! the killed worker as the new standby.
//!
//! The active sets itself active replica, reads the sequence number any
//! earlier active left, and then increments and checkpoints it in a loop. The
//! standby follows every change through the delta log (hot standby) and audits
//! that the numbers arrive in order with no gap or repeat. The verdict checks,
//! at every takeover, that the new active resumed exactly after the last number
//! the killed one committed: nothing lost, nothing repeated.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ckpt_shm::proc::monotonic_ns;

use ckpt::{
    Checkpoint, Config, CreationAttributes, CreationFlags, Mutation, OpenFlags, Service, Time,
    UpdateMode, WatchError,
};

pub mod cluster;

/// The application checkpoint's name (as in the csa103 tutorial).
pub const APP_CHECKPOINT: &str = "safCkpt=csa103Ckpt";
/// The control checkpoint through which the supervisor assigns roles.
pub const CONTROL_CHECKPOINT: &str = "safCkpt=csa103Amf";
/// The section holding the sequence number.
pub const SEQ_SECTION: &[u8] = b"1";
const CONTROL_BYTES: usize = 16;
const STOP: u32 = 1;

/// Demo options.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Segment directory; `None` makes a private one under /dev/shm and removes it.
    pub dir: Option<PathBuf>,
    /// How many times the active is killed.
    pub kills: u32,
    /// Time between kills.
    pub kill_every: Duration,
    /// Section size in bytes (at least 8: the number is a big-endian u64).
    pub section_bytes: usize,
    /// Pause between checkpoint writes of the active (busy-waited).
    pub write_interval: Duration,
}

impl Default for DemoOptions {
    fn default() -> Self {
        Self {
            dir: None,
            kills: 5,
            kill_every: Duration::from_millis(400),
            section_bytes: 8,
            write_interval: Duration::from_micros(20),
        }
    }
}

/// What the demo concluded.
#[derive(Debug, Clone, Default)]
pub struct Verdict {
    /// Takeovers that happened.
    pub takeovers: u32,
    /// Takeovers where the new active did not resume right after the last
    /// committed number (numbers lost).
    pub lost: u32,
    /// Takeovers where the new active repeated a committed number.
    pub repeated: u32,
    /// Kill to first commit of the new active, per takeover.
    pub takeover_ns: Vec<u64>,
    /// Control-checkpoint assignment to first commit (the standby's own part).
    pub promote_ns: Vec<u64>,
    /// The last number in the checkpoint.
    pub last_seq: u64,
    /// Frames the standbys audited, and the gaps, repeats and resyncs they saw.
    pub audited_frames: u64,
    /// Out-of-order numbers the standbys saw in the log.
    pub audit_gaps: u64,
    /// Repeated numbers the standbys saw in the log.
    pub audit_repeats: u64,
    /// Times a standby fell behind the log ring and re-read the section.
    pub audit_resyncs: u64,
}

impl Verdict {
    /// True if no number was lost or repeated.
    pub fn passed(&self) -> bool {
        self.takeovers > 0
            && self.lost == 0
            && self.repeated == 0
            && self.audit_gaps == 0
            && self.audit_repeats == 0
    }
}

/// The application checkpoint's attributes: asynchronous and collocated
/// (the active sets itself active replica), or with `sync`, synchronous
/// (`WR_ALL_REPLICAS`: a write returns once every replica holds it).
fn app_attributes(section_bytes: usize, sync: bool) -> CreationAttributes {
    let flags = if sync {
        CreationFlags::new(UpdateMode::AllReplicas, false)
    } else {
        CreationFlags::new(UpdateMode::ActiveReplica, true)
    };
    CreationAttributes {
        flags,
        checkpoint_bytes: 2 * section_bytes as u64,
        retention_ns: 10 * 1_000_000_000,
        sections_max: 2,
        section_bytes_max: section_bytes as u64,
        section_id_bytes_max: 64,
    }
}

fn control_attributes() -> CreationAttributes {
    CreationAttributes {
        flags: CreationFlags::new(UpdateMode::AllReplicas, false),
        checkpoint_bytes: CONTROL_BYTES as u64,
        retention_ns: 0,
        sections_max: 1,
        section_bytes_max: CONTROL_BYTES as u64,
        section_id_bytes_max: 0,
    }
}

/// The application checkpoint's delta-log ring: room for several hundred
/// milliseconds of frames, so the standby's audit rarely has to
/// resynchronize.
const LOG_BYTES: u64 = 8 << 20;

fn config_for(dir: &Path, node: u32) -> Config {
    Config {
        log_bytes: Some(LOG_BYTES),
        node_id: node,
        ..Config::with_dir(dir)
    }
}

/// Where a worker runs: its node's segment directory and id, the control
/// checkpoint it takes its role from, and the application checkpoint's
/// update mode.
#[derive(Debug, Clone)]
struct Place {
    dir: PathBuf,
    node: u32,
    control: String,
    sync: bool,
}

fn encode_control(epoch: u64, active_pid: u32, flags: u32) -> [u8; CONTROL_BYTES] {
    let mut out = [0u8; CONTROL_BYTES];
    out[..8].copy_from_slice(&epoch.to_be_bytes());
    out[8..12].copy_from_slice(&active_pid.to_be_bytes());
    out[12..].copy_from_slice(&flags.to_be_bytes());
    out
}

fn decode_control(data: &[u8]) -> Option<(u32, u32)> {
    let pid = u32::from_be_bytes(data.get(8..12)?.try_into().ok()?);
    let flags = u32::from_be_bytes(data.get(12..16)?.try_into().ok()?);
    Some((pid, flags))
}

fn decode_seq(data: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(data.get(..8)?.try_into().ok()?))
}

/// An event line a worker prints: `EVENT <kind> key=value…`.
#[derive(Debug, Clone)]
struct Event {
    worker: usize,
    kind: String,
    fields: Vec<(String, String)>,
}

impl Event {
    fn parse(worker: usize, line: &str) -> Option<Event> {
        let mut words = line.strip_prefix("EVENT ")?.split_whitespace();
        let kind = words.next()?.to_string();
        let fields = words
            .filter_map(|w| {
                w.split_once('=')
                    .map(|(k, v)| (k.to_string(), v.to_string()))
            })
            .collect();
        Some(Event {
            worker,
            kind,
            fields,
        })
    }

    fn get(&self, key: &str) -> Option<u64> {
        self.fields.iter().find(|(k, _)| k == key)?.1.parse().ok()
    }
}

struct Worker {
    /// Tags this worker's events (a spawn counter, stable across reordering).
    id: usize,
    label: &'static str,
    child: Child,
}

/// Workers are killed when the supervisor returns, on every path.
impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn_worker(
    exe: &Path,
    place: &Place,
    opts: &DemoOptions,
    index: usize,
    label: &'static str,
    events: &mpsc::Sender<Event>,
) -> Result<Worker, String> {
    let mut command = Command::new(exe);
    command
        .arg("demo-worker")
        .arg("--dir")
        .arg(&place.dir)
        .arg("--node")
        .arg(place.node.to_string())
        .arg("--control")
        .arg(&place.control)
        .arg("--section-bytes")
        .arg(opts.section_bytes.to_string())
        .arg("--write-interval-us")
        .arg(opts.write_interval.as_micros().to_string());
    if place.sync {
        command.arg("--sync");
    }
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start worker {label} ({}): {e}", exe.display()))?;
    let stdout = child.stdout.take().expect("stdout is piped");
    let events = events.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(event) = Event::parse(index, &line) {
                if events.send(event).is_err() {
                    break;
                }
            }
        }
    });
    Ok(Worker {
        id: index,
        label,
        child,
    })
}

fn wait_for(
    events: &mpsc::Receiver<Event>,
    pending: &mut Vec<Event>,
    worker: usize,
    kind: &str,
    timeout: Duration,
) -> Result<Event, String> {
    if let Some(i) = pending
        .iter()
        .position(|e| e.worker == worker && e.kind == kind)
    {
        return Ok(pending.remove(i));
    }
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match events.recv_timeout(left) {
            Ok(e) if e.worker == worker && e.kind == kind => return Ok(e),
            Ok(e) => pending.push(e),
            Err(_) => return Err(format!("worker did not report '{kind}' within {timeout:?}")),
        }
    }
}

/// Removes the private demo directory on the way out.
struct TempDir(Option<PathBuf>);

impl Drop for TempDir {
    fn drop(&mut self) {
        if let Some(dir) = &self.0 {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Runs the demo, printing the timeline to `out`. `exe` is the `ckpt` binary
/// (it is started again as `ckpt demo-worker`).
pub fn run(opts: &DemoOptions, exe: &Path, out: &mut dyn Write) -> Result<Verdict, String> {
    if opts.section_bytes < 8 {
        return Err("--section-bytes must be at least 8 (the number is a u64)".into());
    }
    if opts.kills == 0 {
        return Err("--kills must be at least 1".into());
    }
    let (dir, _cleanup) = match &opts.dir {
        Some(d) => (d.clone(), TempDir(None)),
        None => {
            let d = PathBuf::from(format!("/dev/shm/ckpt-demo-{}", std::process::id()));
            (d.clone(), TempDir(Some(d)))
        }
    };
    let place = Place {
        dir: dir.clone(),
        node: 0,
        control: CONTROL_CHECKPOINT.into(),
        sync: false,
    };
    let service = Service::with_config(config_for(&dir, place.node));
    let rwc = OpenFlags::READ | OpenFlags::WRITE | OpenFlags::CREATE;
    let control = service
        .open(CONTROL_CHECKPOINT, rwc, Some(&control_attributes()))
        .map_err(|e| {
            format!(
                "cannot create the control checkpoint in {}: {e}",
                dir.display()
            )
        })?;
    let app = service
        .open(
            APP_CHECKPOINT,
            rwc,
            Some(&app_attributes(opts.section_bytes, place.sync)),
        )
        .map_err(|e| format!("cannot create {APP_CHECKPOINT}: {e}"))?;
    let started = monotonic_ns();
    let at = |t: u64| format!("{:>8.3}s", t.saturating_sub(started) as f64 / 1e9);
    let w = |out: &mut dyn Write, line: String| {
        let _ = writeln!(out, "{line}");
    };
    w(out, format!(
        "ckpt failover demo: checkpoint \"{APP_CHECKPOINT}\" in {} ({} B section, a write every {:?}, {} kills every {:?})",
        dir.display(), opts.section_bytes, opts.write_interval, opts.kills, opts.kill_every
    ));

    let (tx, rx) = mpsc::channel();
    let mut pending = Vec::new();
    let mut workers = Vec::new();
    for (i, label) in ["I0", "I1"].into_iter().enumerate() {
        let worker = spawn_worker(exe, &place, opts, i, label, &tx)?;
        let ready = wait_for(&rx, &mut pending, i, "ready", Duration::from_secs(10))?;
        w(
            out,
            format!(
                "{}  AMF: started {label} (pid {}) as standby",
                at(monotonic_ns()),
                ready.get("pid").unwrap_or(0)
            ),
        );
        workers.push(worker);
    }

    let mut verdict = Verdict::default();
    let mut spawned = workers.len() - 1;
    let mut epoch = 1u64;
    let mut active = 0usize;
    control
        .overwrite(&[], &encode_control(epoch, workers[active].child.id(), 0))
        .map_err(|e| format!("cannot assign the active: {e}"))?;
    w(
        out,
        format!(
            "{}  AMF: {} is active",
            at(monotonic_ns()),
            workers[active].label
        ),
    );
    let first = wait_for(
        &rx,
        &mut pending,
        workers[active].id,
        "active",
        Duration::from_secs(10),
    )?;
    w(
        out,
        format!(
            "{}  {}: active replica set; {}, writing from {}",
            at(first.get("t_first_ns").unwrap_or(0)),
            workers[active].label,
            match first.get("read") {
                Some(seq) => format!("earlier state seq={seq}"),
                None => "no earlier state".into(),
            },
            first.get("first").unwrap_or(0)
        ),
    );

    for _ in 0..opts.kills {
        std::thread::sleep(opts.kill_every);
        let standby = 1 - active;
        let victim = &mut workers[active];
        let t_kill = monotonic_ns();
        victim
            .child
            .kill()
            .map_err(|e| format!("cannot kill worker {}: {e}", victim.label))?;
        let _ = victim.child.wait();
        let committed = app
            .read_section(SEQ_SECTION)
            .ok()
            .and_then(|d| decode_seq(&d))
            .ok_or("the checkpoint has no sequence number after the kill")?;
        w(
            out,
            format!(
                "{}  AMF: SIGKILL {} (pid {}); the checkpoint holds seq={committed}",
                at(t_kill),
                victim.label,
                victim.child.id()
            ),
        );
        epoch += 1;
        let t_assign = monotonic_ns();
        control
            .overwrite(&[], &encode_control(epoch, workers[standby].child.id(), 0))
            .map_err(|e| format!("cannot assign the active: {e}"))?;
        let took = wait_for(
            &rx,
            &mut pending,
            workers[standby].id,
            "active",
            Duration::from_secs(10),
        )?;
        let read = took.get("read");
        let first_new = took.get("first").unwrap_or(0);
        let t_first = took.get("t_first_ns").unwrap_or(t_assign);
        verdict.takeovers += 1;
        verdict.takeover_ns.push(t_first.saturating_sub(t_kill));
        verdict.promote_ns.push(t_first.saturating_sub(t_assign));
        let ok = read == Some(committed) && first_new == committed + 1;
        if read.is_none_or(|r| r < committed) || first_new > committed + 1 {
            verdict.lost += 1;
        }
        if first_new <= committed {
            verdict.repeated += 1;
        }
        collect_audit(&rx, &mut pending, workers[standby].id, &mut verdict);
        w(out, format!(
            "{}  {}: took over in {:.0} µs (AMF to first write {:.0} µs): read seq={}, continues with {} {}",
            at(t_first),
            workers[standby].label,
            t_first.saturating_sub(t_kill) as f64 / 1e3,
            t_first.saturating_sub(t_assign) as f64 / 1e3,
            read.map_or("none".into(), |r| r.to_string()),
            first_new,
            if ok { "✓" } else { "✗ MISMATCH" }
        ));
        let label = workers[active].label;
        spawned += 1;
        let restarted = spawn_worker(exe, &place, opts, spawned, label, &tx)?;
        let index = workers.len();
        workers.push(restarted);
        let ready = wait_for(&rx, &mut pending, spawned, "ready", Duration::from_secs(10))?;
        w(
            out,
            format!(
                "{}  AMF: restarted {label} (pid {}) as standby",
                at(monotonic_ns()),
                ready.get("pid").unwrap_or(0)
            ),
        );
        // The killed worker's place goes to the restarted one.
        workers.swap(active, index);
        workers.truncate(2);
        active = standby;
    }

    // Wind down: the standby reports its audit and exits; the active is killed.
    let standby = 1 - active;
    epoch += 1;
    let _ = control.overwrite(&[], &encode_control(epoch, 0, STOP));
    collect_audit(&rx, &mut pending, workers[standby].id, &mut verdict);
    drop(workers);
    verdict.last_seq = app
        .read_section(SEQ_SECTION)
        .ok()
        .and_then(|d| decode_seq(&d))
        .unwrap_or(0);
    drop(app);
    drop(control);

    let mut times = verdict.takeover_ns.clone();
    times.sort_unstable();
    let p50 = times.get(times.len() / 2).copied().unwrap_or(0);
    let max = times.last().copied().unwrap_or(0);
    w(out, String::new());
    w(
        out,
        format!(
            "verdict: {} — {} takeover{}, last seq {}, numbers lost: {}, repeated: {}",
            if verdict.passed() { "PASS" } else { "FAIL" },
            verdict.takeovers,
            if verdict.takeovers == 1 { "" } else { "s" },
            verdict.last_seq,
            verdict.lost,
            verdict.repeated
        ),
    );
    w(
        out,
        format!(
            "         takeover (kill to first write of the new active): p50 {:.0} µs, max {:.0} µs",
            p50 as f64 / 1e3,
            max as f64 / 1e3
        ),
    );
    w(out, format!(
        "         standby audit of the delta log: {} frames in order, {} gaps, {} repeats, {} resyncs after falling behind",
        verdict.audited_frames, verdict.audit_gaps, verdict.audit_repeats, verdict.audit_resyncs
    ));
    Ok(verdict)
}

/// Waits (up to 5 s) for a standby's audit report and adds it to the verdict.
fn collect_audit(
    events: &mpsc::Receiver<Event>,
    pending: &mut Vec<Event>,
    worker: usize,
    verdict: &mut Verdict,
) {
    if let Ok(audit) = wait_for(events, pending, worker, "audit", Duration::from_secs(5)) {
        add_audit(verdict, &audit);
    }
}

fn add_audit(verdict: &mut Verdict, audit: &Event) {
    verdict.audited_frames += audit.get("frames").unwrap_or(0);
    verdict.audit_gaps += audit.get("gaps").unwrap_or(0);
    verdict.audit_repeats += audit.get("repeats").unwrap_or(0);
    verdict.audit_resyncs += audit.get("resyncs").unwrap_or(0);
}

/// Options of one worker process.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// Segment directory.
    pub dir: PathBuf,
    /// This host's node id.
    pub node: u32,
    /// The control checkpoint it takes its role from.
    pub control: String,
    /// The application checkpoint is synchronous (`WR_ALL_REPLICAS`): the
    /// active does not set itself active replica (the supervisor moves the
    /// primary).
    pub sync: bool,
    /// Section size.
    pub section_bytes: usize,
    /// Pause between writes when active.
    pub write_interval: Duration,
}

/// The standby's audit of the active's writes, from the delta log.
#[derive(Debug, Default)]
struct Audit {
    last: Option<u64>,
    frames: u64,
    gaps: u64,
    repeats: u64,
    resyncs: u64,
}

impl Audit {
    fn see(&mut self, seq: u64) {
        self.frames += 1;
        match self.last {
            Some(prev) if seq == prev + 1 => {}
            Some(prev) if seq <= prev => self.repeats += 1,
            Some(_) => self.gaps += 1,
            None => {}
        }
        self.last = Some(seq);
    }

    fn drain(&mut self, watcher: &mut ckpt::Watcher<'_>) {
        loop {
            match watcher.next_change() {
                Ok(Some(change)) => match change.mutation {
                    Mutation::Create { data, .. } | Mutation::Overwrite { data, .. } => {
                        if let Some(seq) = decode_seq(data) {
                            self.see(seq);
                        }
                    }
                    _ => {}
                },
                Ok(None) => return,
                Err(WatchError::Lagged { .. }) => {
                    // Fell behind the ring: take a snapshot of the sections and
                    // go on right after the changes it holds.
                    self.resyncs += 1;
                    match watcher.resync() {
                        Ok(snapshot) => {
                            self.last = snapshot
                                .section(SEQ_SECTION)
                                .and_then(|s| decode_seq(&s.data));
                        }
                        Err(_) => return,
                    }
                }
                Err(WatchError::Corrupt { .. }) => return,
            }
        }
    }

    fn report(&self) {
        println!(
            "EVENT audit frames={} gaps={} repeats={} resyncs={}",
            self.frames, self.gaps, self.repeats, self.resyncs
        );
    }
}

/// A worker process (`ckpt demo-worker`): standby until assigned, then active
/// until killed. Returns the exit code.
pub fn worker_main(opts: &WorkerOptions) -> i32 {
    match worker(opts) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("demo worker {}: {e}", std::process::id());
            1
        }
    }
}

fn worker(opts: &WorkerOptions) -> Result<(), String> {
    let service = Service::with_config(config_for(&opts.dir, opts.node));
    let rwc = OpenFlags::READ | OpenFlags::WRITE | OpenFlags::CREATE;
    let app = service
        .open(
            APP_CHECKPOINT,
            rwc,
            Some(&app_attributes(opts.section_bytes, opts.sync)),
        )
        .map_err(|e| e.to_string())?;
    let control = service
        .open(opts.control.as_bytes(), OpenFlags::READ, None)
        .map_err(|e| e.to_string())?;
    let me = std::process::id();
    let mut watcher = app.watch();
    let mut assignments = control.watch();
    let mut audit = Audit::default();
    println!("EVENT ready pid={me}");
    loop {
        let assignment = control.read_section(&[]).map_err(|e| e.to_string())?;
        // Empty until the AMF assigns a role for the first time.
        let (pid, flags) = decode_control(&assignment).unwrap_or((0, 0));
        if flags & STOP != 0 {
            audit.drain(&mut watcher);
            audit.report();
            return Ok(());
        }
        if pid == me {
            audit.drain(&mut watcher);
            audit.report();
            return be_active(&app, opts);
        }
        audit.drain(&mut watcher);
        // Sleep on the control checkpoint (futex) until the AMF writes to it.
        assignments.wait(Duration::from_millis(20), Duration::ZERO);
        while let Ok(Some(_)) = assignments.next_change() {}
    }
}

fn be_active(app: &Checkpoint, opts: &WorkerOptions) -> Result<(), String> {
    let t_promoted = monotonic_ns();
    if !opts.sync {
        // On a replica of another host's primary, this promotes it.
        app.set_active_replica().map_err(|e| e.to_string())?;
    }
    let read = app
        .read_section(SEQ_SECTION)
        .ok()
        .and_then(|d| decode_seq(&d));
    let mut seq = read.map_or(0, |s| s + 1);
    let initial = {
        let mut data = vec![0u8; opts.section_bytes];
        data[..8].copy_from_slice(&seq.to_be_bytes());
        data
    };
    let section = match app.section(SEQ_SECTION) {
        Ok(s) => {
            s.overwrite(&initial).map_err(|e| e.to_string())?;
            s
        }
        Err(_) => app
            .create_section(SEQ_SECTION, Time::END, &initial)
            .map_err(|e| e.to_string())?,
    };
    let t_first = monotonic_ns();
    println!(
        "EVENT active pid={} {}first={seq} t_promoted_ns={t_promoted} t_first_ns={t_first}",
        std::process::id(),
        read.map_or(String::new(), |r| format!("read={r} "))
    );
    let len = opts.section_bytes;
    loop {
        let deadline = Instant::now() + opts.write_interval;
        while Instant::now() < deadline {
            std::hint::spin_loop();
        }
        seq += 1;
        section
            .overwrite_with(len, |dst| {
                dst.write_at(0, &seq.to_be_bytes());
            })
            .map_err(|e| e.to_string())?;
    }
}
