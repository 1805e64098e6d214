//! The csa103 failover demo across two nodes (`ckpt demo --nodes 2`): two
//! node daemons, each with its own segment directory (a "host") and, run as
//! root, its own network namespace (joined through a bridge; otherwise
//! loopback ports), an active worker on one node and a standby on the
//! other, and three faults in turn:
//!
//! 1. the active process is killed: its node's daemon still ships what it
//!    committed, the standby on the other node takes over (its replica is
//!    promoted, a new term), and the old primary becomes its replica;
//! 2. the active node is lost (its process and its daemon killed at once):
//!    the standby takes over from what its replica holds; synchronously
//!    (`--sync`, `WR_ALL_REPLICAS`) nothing acknowledged is lost, at most the
//!    one write in flight, never acknowledged; asynchronously what is lost
//!    stays within the lag the daemon reported just before; the lost node
//!    comes back as a replica of the new primary;
//! 3. the link is cut (the veth link down; on loopback, the standby node's
//!    daemon frozen: it hears nothing and acknowledges nothing): the active
//!    goes on, and once the link is back the replica catches up.
//!
//! At the end both copies must be equal, byte for byte. The supervisor plays
//! the availability manager, as in the one-host demo: a control checkpoint
//! per node assigns roles. Synchronous checkpoints are moved to the new
//! active's node by the supervisor (`Segment::promote`, what `ckpt promote`
//! does); asynchronous ones by the new active's own `set_active_replica`.

use std::net::SocketAddr;

use ckpt_shm::Segment;
use rustix::process::Signal;

use super::*;

/// Options of the two-node demo.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// Where the two nodes' segment directories go (`node1`, `node2`);
    /// `None`: a private directory under /dev/shm, removed at the end.
    pub root: Option<PathBuf>,
    /// The application checkpoint is synchronous (`WR_ALL_REPLICAS`).
    pub sync: bool,
    /// How long the active writes between two faults.
    pub phase: Duration,
    /// Section size in bytes (at least 8).
    pub section_bytes: usize,
    /// Pause between writes of the active.
    pub write_interval: Duration,
    /// Put each node's daemon in its own network namespace (each joined by
    /// a veth pair to a bridge; root only), so that the link cut is a real
    /// one. Falls
    /// back to loopback, saying why, where namespaces cannot be made.
    pub netns: bool,
}

/// What one fault showed.
#[derive(Debug, Clone)]
pub struct FaultResult {
    /// The fault.
    pub fault: &'static str,
    /// The last number the failed side committed.
    pub committed: u64,
    /// The last number the survivor held.
    pub held: u64,
    /// How many were lost (committed − held).
    pub lost: u64,
    /// How many could be lost: 1 in flight (synchronous), the lag reported
    /// (asynchronous), 0 where the daemon survived.
    pub allowed: u64,
    /// The new active went on right after what it held.
    pub resumed: bool,
}

/// What the two-node demo concluded.
#[derive(Debug, Clone, Default)]
pub struct ClusterVerdict {
    /// The takeovers' results.
    pub faults: Vec<FaultResult>,
    /// Writes the active made while the link was cut.
    pub written_while_cut: u64,
    /// How long the replica took to catch up once the link was back.
    pub catch_up: Duration,
    /// Both copies were equal at the end.
    pub converged: bool,
    /// The standbys' audits.
    pub audit: Verdict,
}

impl ClusterVerdict {
    /// True if every takeover lost no more than allowed, resumed right after
    /// what the survivor held, the active went on writing while the link
    /// was cut, and the copies converged.
    pub fn passed(&self) -> bool {
        self.faults.len() == 2
            && self.faults.iter().all(|f| f.lost <= f.allowed && f.resumed)
            && self.written_while_cut > 0
            && self.converged
            && self.audit.audit_gaps == 0
            && self.audit.audit_repeats == 0
    }
}

/// One node: its directory, daemon and control checkpoint.
struct Host {
    id: u32,
    /// The network namespace its daemon runs in (none: loopback).
    ns: Option<String>,
    dir: PathBuf,
    listen: SocketAddr,
    peer: (u32, SocketAddr),
    daemon: Option<Child>,
    control: Option<Checkpoint>,
    epoch: u64,
}

impl Host {
    fn control_name(&self) -> String {
        format!("{CONTROL_CHECKPOINT}-n{}", self.id)
    }

    fn place(&self, sync: bool) -> Place {
        Place {
            dir: self.dir.clone(),
            node: self.id,
            control: self.control_name(),
            sync,
        }
    }

    fn service(&self) -> Service {
        Service::with_config(config_for(&self.dir, self.id))
    }

    /// Starts this node's daemon (its log goes to `node<id>.log` in the
    /// directory above the segments).
    fn start_daemon(&mut self, exe: &Path) -> Result<(), String> {
        let log_path = self.dir.with_extension("log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| format!("{}: {e}", log_path.display()))?;
        let mut command = match &self.ns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(exe);
                c
            }
            None => Command::new(exe),
        };
        let child = command
            .arg("--dir")
            .arg(&self.dir)
            .arg("daemon")
            .args(["--node", &self.id.to_string()])
            .args(["--name", &format!("node{}", self.id)])
            .args(["--listen", &self.listen.to_string()])
            .args(["--peer", &format!("{}={}", self.peer.0, self.peer.1)])
            // Replicas with the primary's ring (`config_for`): once promoted,
            // it must hold what a cut link falls behind by.
            .args(["--log-bytes", &LOG_BYTES.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot start node {}'s daemon: {e}", self.id))?;
        self.daemon = Some(child);
        wait_until("the daemon to answer", Duration::from_secs(10), || {
            self.status().is_some()
        })
    }

    /// The daemon's status, if it answers.
    fn status(&self) -> Option<ckpt::node::NodeStatus> {
        crate::daemon::fetch_status(&self.dir.join(crate::daemon::CONTROL_NAME)).ok()
    }

    fn signal_daemon(&mut self, signal: Signal) {
        if let Some(d) = &self.daemon {
            signal_child(d, signal);
        }
    }

    fn kill_daemon(&mut self) {
        if let Some(mut d) = self.daemon.take() {
            let _ = d.kill();
            let _ = d.wait();
        }
    }

    /// Assigns the active role to `pid` (0: nobody) or stops the workers.
    fn assign(&mut self, pid: u32, flags: u32) -> Result<(), String> {
        self.epoch += 1;
        let c = self.control.as_ref().ok_or("no control checkpoint")?;
        c.overwrite(&[], &encode_control(self.epoch, pid, flags))
            .map_err(|e| format!("cannot assign a role on node {}: {e}", self.id))
    }

    /// The sequence number this node's copy of the checkpoint holds.
    fn seq(&self) -> Option<u64> {
        self.service()
            .open(APP_CHECKPOINT, OpenFlags::READ, None)
            .ok()?
            .read_section(SEQ_SECTION)
            .ok()
            .and_then(|d| decode_seq(&d))
    }

    /// This node's copy: replica or not, and its term.
    fn role(&self) -> Option<(bool, u32)> {
        let c = self
            .service()
            .open(APP_CHECKPOINT, OpenFlags::READ, None)
            .ok()?;
        Some((c.segment().is_replica(), c.segment().current_term()))
    }

    /// The lag of this node's daemon's link shipping the checkpoint.
    fn shipping_lag(&self) -> Option<u64> {
        let status =
            crate::daemon::fetch_status(&self.dir.join(crate::daemon::CONTROL_NAME)).ok()?;
        status
            .links
            .iter()
            .find(|l| l.checkpoint == APP_CHECKPOINT && l.role == ckpt::node::Role::Shipping)
            .and_then(|l| l.lag)
    }

    /// Promotes this node's replica (what `ckpt promote` does).
    fn promote(&self) -> Result<u32, String> {
        let rw = OpenFlags::READ | OpenFlags::WRITE;
        let name = ckpt_core::CheckpointName::new(APP_CHECKPOINT).expect("a valid name");
        let s = Segment::open_for_link(&config_for(&self.dir, self.id), &name, rw)
            .map_err(|e| format!("node {}: {e}", self.id))?;
        s.promote_caught_up(self.id, Duration::from_secs(5))
            .map_err(|e| format!("node {}: not promoted: {e:?}", self.id))
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        self.control = None;
        if let Some(mut d) = self.daemon.take() {
            // A stopped one is woken first; SIGTERM stops it cleanly.
            signal_child(&d, Signal::CONT);
            signal_child(&d, Signal::TERM);
            let _ = d.wait();
        }
    }
}

/// Sends `signal` to a child of ours (not yet waited for, so its pid is
/// still its own).
fn signal_child(child: &Child, signal: Signal) {
    if let Some(pid) = rustix::process::Pid::from_raw(child.id() as i32) {
        let _ = rustix::process::kill_process(pid, signal);
    }
}

fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    while !f() {
        if Instant::now() > deadline {
            return Err(format!("timed out after {timeout:?} waiting for {what}"));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

fn free_port() -> Result<SocketAddr, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| format!("no free loopback port: {e}"))
}

/// Sections as (id, data) pairs.
type Sections = Vec<(Vec<u8>, Vec<u8>)>;

/// The sections of the checkpoint in `host`'s copy, sorted.
fn sections(host: &Host) -> Result<Sections, String> {
    let c = host
        .service()
        .open(APP_CHECKPOINT, OpenFlags::READ, None)
        .map_err(|e| format!("node {}: {e}", host.id))?;
    let mut out = Vec::new();
    for d in c
        .sections(ckpt::SectionsChosen::Any)
        .map_err(|e| e.to_string())?
    {
        let id = d.id.as_bytes().to_vec();
        let data = c.read_section(&id).map_err(|e| e.to_string())?;
        out.push((id, data));
    }
    out.sort();
    Ok(out)
}

/// Runs the two-node demo, printing the timeline to `out`. `exe` is the
/// `ckpt` binary (started again as `ckpt daemon` and `ckpt demo-worker`).
pub fn run(
    opts: &ClusterOptions,
    exe: &Path,
    out: &mut dyn Write,
) -> Result<ClusterVerdict, String> {
    if opts.section_bytes < 8 {
        return Err("--section-bytes must be at least 8 (the number is a u64)".into());
    }
    let (root, _cleanup) = match &opts.root {
        Some(r) => (r.clone(), TempDir(None)),
        None => {
            let r = PathBuf::from(format!("/dev/shm/ckpt-demo2-{}", std::process::id()));
            (r.clone(), TempDir(Some(r)))
        }
    };
    std::fs::create_dir_all(&root).map_err(|e| format!("{}: {e}", root.display()))?;
    // Two namespaces joined through a bridge (root), else loopback ports.
    let net = if opts.netns && rustix::process::geteuid().is_root() {
        match crate::netns::Net::new() {
            Ok(net) => Some(net),
            Err(why) => {
                let _ = writeln!(
                    out,
                    "network namespaces unavailable ({why}): loopback instead"
                );
                None
            }
        }
    } else {
        None
    };
    let (p1, p2) = match &net {
        Some(n) => {
            let at = |ip: &str| format!("{ip}:7400").parse::<SocketAddr>();
            (
                at(&n.ip[0]).map_err(|e| e.to_string())?,
                at(&n.ip[1]).map_err(|e| e.to_string())?,
            )
        }
        None => (free_port()?, free_port()?),
    };
    let ns = |i: usize| net.as_ref().map(|n| n.ns[i].clone());
    let host = |id: u32, listen, peer| Host {
        id,
        ns: ns(id as usize - 1),
        dir: root.join(format!("node{id}")),
        listen,
        peer,
        daemon: None,
        control: None,
        epoch: 0,
    };
    let mut hosts = [host(1, p1, (2, p2)), host(2, p2, (1, p1))];
    let started = monotonic_ns();
    let at = || {
        format!(
            "{:>7.3}s",
            monotonic_ns().saturating_sub(started) as f64 / 1e9
        )
    };
    let w = |out: &mut dyn Write, line: String| {
        let _ = writeln!(out, "{line}");
    };
    let mode = if opts.sync {
        "synchronous (WR_ALL_REPLICAS: a write returns once the other node holds it)"
    } else {
        "asynchronous (WR_ACTIVE_REPLICA: the other node follows)"
    };
    let place = match &net {
        Some(n) => format!(
            "network namespaces {} and {} joined through a bridge",
            n.ns[0], n.ns[1]
        ),
        None => "loopback".to_string(),
    };
    w(out, format!(
        "ckpt two-node failover demo: \"{APP_CHECKPOINT}\", {mode}; node 1 on {p1}, node 2 on {p2} ({place}; segments and daemon logs in {})",
        root.display()
    ));
    let demo = DemoOptions {
        dir: None,
        kills: 0,
        kill_every: opts.phase,
        section_bytes: opts.section_bytes,
        write_interval: opts.write_interval,
    };
    for h in &mut hosts {
        h.start_daemon(exe)?;
        let rwc = OpenFlags::READ | OpenFlags::WRITE | OpenFlags::CREATE;
        let attrs = CreationAttributes {
            flags: CreationFlags::new(UpdateMode::ActiveReplica, true),
            ..control_attributes()
        };
        // Each node's own control checkpoint, on no other node: its open
        // waits for no replica (as it would in the daemon's first seconds,
        // in case a peer held one of that name).
        let c = h
            .service()
            .open_within(
                h.control_name().as_bytes(),
                rwc,
                Some(&attrs),
                Duration::ZERO,
            )
            .map_err(|e| format!("node {}: control checkpoint: {e}", h.id))?;
        c.set_active_replica().map_err(|e| e.to_string())?;
        h.control = Some(c);
        w(out, format!("{}  node {}: daemon up", at(), h.id));
    }
    // A daemon's first seconds: an application's open of a checkpoint its
    // node does not hold waits for a peer's offer of it (the first worker's
    // would, here), so that a checkpoint a peer holds is never created twice.
    wait_until("the daemons to settle", Duration::from_secs(30), || {
        hosts
            .iter()
            .all(|h| h.status().is_some_and(|s| s.offers_settled))
    })?;
    w(
        out,
        format!(
            "{}  both daemons settled (their peers had the time to offer what they hold)",
            at()
        ),
    );
    let (tx, rx) = mpsc::channel();
    let mut pending = Vec::new();
    let mut spawned = 0usize;
    let mut verdict = ClusterVerdict::default();
    // Workers by node (index 0: node 1).
    let mut workers: [Option<Worker>; 2] = [None, None];
    let mut start_worker = |hosts: &[Host; 2],
                            node: usize,
                            pending: &mut Vec<Event>,
                            out: &mut dyn Write|
     -> Result<Worker, String> {
        spawned += 1;
        let label = if node == 0 { "node 1" } else { "node 2" };
        let worker = spawn_worker(
            exe,
            &hosts[node].place(opts.sync),
            &demo,
            spawned,
            label,
            &tx,
        )?;
        let ready = wait_for(&rx, pending, spawned, "ready", Duration::from_secs(10))?;
        let _ = writeln!(
            out,
            "{}  {label}: worker (pid {}) started as standby",
            at(),
            ready.get("pid").unwrap_or(0)
        );
        Ok(worker)
    };
    // The first active, on node 1: it creates the checkpoint.
    let first = start_worker(&hosts, 0, &mut pending, out)?;
    let pid = first.child.id();
    let first_id = first.id;
    workers[0] = Some(first);
    hosts[0].assign(pid, 0)?;
    wait_for(
        &rx,
        &mut pending,
        first_id,
        "active",
        Duration::from_secs(10),
    )?;
    w(out, format!("{}  node 1: active, writing from 0", at()));
    wait_until("node 2's replica", Duration::from_secs(10), || {
        matches!(hosts[1].role(), Some((true, _)))
    })?;
    workers[1] = Some(start_worker(&hosts, 1, &mut pending, out)?);

    // 1. The active process is killed; its node's daemon lives.
    std::thread::sleep(opts.phase);
    let (dead, survivor) = (0usize, 1usize);
    if let Some(mut victim) = workers[dead].take() {
        let _ = victim.child.kill();
        let _ = victim.child.wait();
    }
    let committed = hosts[dead].seq().ok_or("no sequence number on node 1")?;
    w(
        out,
        format!(
            "{}  FAULT 1: SIGKILL the active process on node 1; node 1 holds seq={committed}",
            at()
        ),
    );
    // Its daemon still ships what it committed.
    let shipped = wait_until(
        "node 2 to hold what node 1 committed",
        Duration::from_secs(10),
        || hosts[survivor].seq() == Some(committed),
    );
    let held = hosts[survivor].seq().unwrap_or(0);
    if shipped.is_ok() {
        w(
            out,
            format!(
                "{}  node 1's daemon shipped the rest: node 2 holds seq={held}",
                at()
            ),
        );
    }
    let fault = take_over(
        &mut hosts,
        &mut workers,
        survivor,
        opts.sync,
        (&rx, &mut pending),
        &mut verdict.audit,
        out,
        &at,
    )?;
    verdict.faults.push(FaultResult {
        fault: "active process killed",
        committed,
        held,
        lost: committed.saturating_sub(held),
        allowed: 0,
        resumed: fault,
    });
    // The old primary's node follows the new one; a standby starts there.
    let term = rejoin(&hosts, (dead, survivor))?;
    w(
        out,
        format!(
            "{}  node 1's copy is a replica of node 2's now (term {term})",
            at()
        ),
    );
    workers[dead] = Some(start_worker(&hosts, dead, &mut pending, out)?);

    // 2. The active node is lost: its process and its daemon, at once.
    std::thread::sleep(opts.phase);
    let (dead, survivor) = (1usize, 0usize);
    let victim = workers[dead].take().ok_or("no active worker")?;
    signal_child(&victim.child, Signal::STOP);
    // The writer frozen, the lag the daemon reports (once its poll has seen
    // the last frame) only shrinks until the daemon dies with it.
    std::thread::sleep(Duration::from_millis(5));
    let lag = hosts[dead].shipping_lag().unwrap_or(0);
    hosts[dead].kill_daemon();
    drop(victim);
    let committed = hosts[dead].seq().ok_or("no sequence number on node 2")?;
    // Whatever node 1's daemon received is applied by now.
    std::thread::sleep(Duration::from_millis(200));
    let held = hosts[survivor].seq().unwrap_or(0);
    let lost = committed.saturating_sub(held);
    w(out, format!(
        "{}  FAULT 2: node 2 lost (its active process and its daemon killed at once; the daemon reported a lag of {lag} frames); node 2 held seq={committed}, node 1 holds seq={held}: {lost} lost",
        at()
    ));
    let resumed = take_over(
        &mut hosts,
        &mut workers,
        survivor,
        opts.sync,
        (&rx, &mut pending),
        &mut verdict.audit,
        out,
        &at,
    )?;
    verdict.faults.push(FaultResult {
        fault: "active node lost",
        committed,
        held,
        lost,
        // Synchronous: the one write in flight was never acknowledged.
        // Asynchronous: at most what the daemon had not shipped.
        allowed: if opts.sync { 1 } else { lag },
        resumed,
    });
    // Node 2 comes back, as a replica of node 1.
    hosts[dead].start_daemon(exe)?;
    let term = rejoin(&hosts, (dead, survivor))?;
    w(
        out,
        format!(
            "{}  node 2 back: its copy is a replica of node 1's (term {term})",
            at()
        ),
    );
    workers[dead] = Some(start_worker(&hosts, dead, &mut pending, out)?);

    // 3. The link is cut: the veth link down (namespaces), else node 2's
    // daemon frozen: it hears nothing, acknowledges nothing.
    std::thread::sleep(opts.phase);
    let before = hosts[0].seq().unwrap_or(0);
    let how = match &net {
        Some(n) => {
            n.link(false)?;
            "the veth link down"
        }
        None => {
            hosts[1].signal_daemon(Signal::STOP);
            "node 2's daemon frozen"
        }
    };
    w(
        out,
        format!("{}  FAULT 3: link cut ({how}) at node 1 seq={before}", at()),
    );
    std::thread::sleep(opts.phase.max(Duration::from_millis(1500)));
    let during = hosts[0].seq().unwrap_or(0);
    verdict.written_while_cut = during.saturating_sub(before);
    let stale = hosts[1].seq().unwrap_or(0);
    match &net {
        Some(n) => n.link(true)?,
        None => hosts[1].signal_daemon(Signal::CONT),
    }
    let t_restore = Instant::now();
    w(out, format!(
        "{}  link restored: the active went on while cut ({} writes; node 1 at seq={during}, node 2 still at seq={stale})",
        at(), verdict.written_while_cut
    ));
    wait_until("node 2 to catch up", Duration::from_secs(20), || {
        hosts[1].seq() >= Some(during)
    })?;
    verdict.catch_up = t_restore.elapsed();
    w(
        out,
        format!(
            "{}  node 2 caught up in {:.0} ms",
            at(),
            verdict.catch_up.as_secs_f64() * 1e3
        ),
    );

    // Wind down: the standby reports its audit; the active stops writing;
    // then both copies must be equal.
    std::thread::sleep(opts.phase / 2);
    hosts[1].assign(0, STOP)?;
    if let Some(standby) = &workers[1] {
        collect_audit(&rx, &mut pending, standby.id, &mut verdict.audit);
    }
    let active = workers[0].take();
    drop(active);
    let last = hosts[0].seq().unwrap_or(0);
    let equal = wait_until("both copies to be equal", Duration::from_secs(10), || {
        hosts[1].seq() == Some(last)
            && matches!((sections(&hosts[0]), sections(&hosts[1])), (Ok(a), Ok(b)) if a == b)
    });
    verdict.converged = equal.is_ok();
    drop(workers);

    w(out, String::new());
    for f in &verdict.faults {
        w(out, format!(
            "{:<22} committed seq={}, survivor held seq={}, lost {} (allowed {}), new active resumed right after: {}",
            f.fault, f.committed, f.held, f.lost, f.allowed, if f.resumed { "yes" } else { "NO" }
        ));
    }
    w(out, format!(
        "{:<22} the active wrote {} while cut; the replica caught up {:.0} ms after the link was back",
        "link cut", verdict.written_while_cut, verdict.catch_up.as_secs_f64() * 1e3
    ));
    w(out, format!(
        "verdict: {} — last seq {last}; both nodes' copies {}; standby audits: {} frames in order, {} gaps, {} repeats",
        if verdict.passed() { "PASS" } else { "FAIL" },
        if verdict.converged { "equal, byte for byte" } else { "DIFFER" },
        verdict.audit.audited_frames, verdict.audit.audit_gaps, verdict.audit.audit_repeats
    ));
    if opts.sync {
        w(out, "         synchronous: no acknowledged write was lost (at most the one in flight when its node died)".into());
    } else {
        w(out, "         asynchronous: what a lost node took with it stayed within the lag its daemon reported".into());
    }
    Ok(verdict)
}

/// Waits until node `back`'s copy is a replica of node `primary`'s, in its
/// term (which it returns).
fn rejoin(hosts: &[Host; 2], (back, primary): (usize, usize)) -> Result<u32, String> {
    let term = hosts[primary].role().map_or(0, |r| r.1);
    let what = format!(
        "node {}'s copy to become node {}'s replica",
        hosts[back].id, hosts[primary].id
    );
    wait_until(&what, Duration::from_secs(20), || {
        hosts[back].role() == Some((true, term))
    })?;
    Ok(term)
}

/// The standby on `node` takes over: its replica is promoted (by the
/// supervisor for a synchronous checkpoint, by the worker's
/// `set_active_replica` otherwise), then it is assigned the active role.
/// True if it resumed right after what its copy held.
#[allow(clippy::too_many_arguments)]
fn take_over(
    hosts: &mut [Host; 2],
    workers: &mut [Option<Worker>; 2],
    node: usize,
    sync: bool,
    (rx, pending): (&mpsc::Receiver<Event>, &mut Vec<Event>),
    audit: &mut Verdict,
    out: &mut dyn Write,
    at: &dyn Fn() -> String,
) -> Result<bool, String> {
    let held = hosts[node].seq().unwrap_or(0);
    if sync {
        let term = hosts[node].promote()?;
        let _ = writeln!(
            out,
            "{}  AMF: promoted node {}'s replica (term {term})",
            at(),
            hosts[node].id
        );
    }
    let worker = workers[node].as_ref().ok_or("no standby worker")?;
    let (id, pid) = (worker.id, worker.child.id());
    hosts[node].assign(pid, 0)?;
    let took = wait_for(rx, pending, id, "active", Duration::from_secs(10))?;
    collect_audit(rx, pending, id, audit);
    let read = took.get("read");
    let first = took.get("first").unwrap_or(0);
    let _ = writeln!(
        out,
        "{}  node {}: the standby took over: read seq={}, continues with {}",
        at(),
        hosts[node].id,
        read.map_or("none".into(), |r| r.to_string()),
        first
    );
    Ok(read == Some(held) && first == held + 1)
}
