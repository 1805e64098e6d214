//! What the multi-node tests share: daemons in network namespaces, the
//! segment directories standing for each node, and the checker that waits
//! for two nodes' copies to be equal byte for byte.

#![allow(dead_code)] // Each test file uses its own part.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ckpt::{Config, CreationAttributes, CreationFlags, OpenFlags, Service, Time, UpdateMode};
use ckpt_cli::netns::Net;

/// How long any one wait lasts at most.
pub const WAIT: Duration = Duration::from_secs(30);
/// The daemons' port.
pub const PORT: u16 = 7400;

/// True if this process is root; otherwise prints why `what` is skipped.
pub fn root_or_skip(what: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        eprintln!("SKIPPED: {what} need root (network namespaces, veth, tc, iptables)");
    }
    root
}

/// A process in a namespace; killed on drop.
pub struct Daemon(pub Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A node: its id (node `id` runs in namespace `id - 1`) and its segment
/// directory.
pub struct Node {
    pub id: u32,
    pub dir: PathBuf,
}

impl Node {
    pub fn new(root: &std::path::Path, id: u32) -> Node {
        Node {
            id,
            dir: root.join(format!("node{id}")),
        }
    }

    pub fn service(&self) -> Service {
        Service::with_config(Config {
            node_id: self.id,
            ..Config::with_dir(&self.dir)
        })
    }

    /// Its daemon's status, if it answers.
    pub fn status(&self) -> Option<ckpt::node::NodeStatus> {
        ckpt_cli::daemon::fetch_status(&self.dir.join(ckpt_cli::daemon::CONTROL_NAME)).ok()
    }
}

/// Starts `ckpt daemon` for `node` in its namespace, listening on its
/// address (port [`PORT`]), with `args` added; waits until it answers. A
/// daemon that exits at once (a cluster engine not yet taking clients) is
/// started again, up to [`WAIT`]. Its log goes to the node's directory
/// name + `.log`.
pub fn start_daemon(net: &Net, node: &Node, args: &[&str]) -> Daemon {
    let i = node.id as usize - 1;
    let deadline = Instant::now() + WAIT;
    loop {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(node.dir.with_extension("log"))
            .unwrap();
        let mut child = Command::new("ip")
            .args(["netns", "exec", &net.ns[i], env!("CARGO_BIN_EXE_ckpt")])
            .arg("--dir")
            .arg(&node.dir)
            .args(["daemon", "--node", &node.id.to_string()])
            .args(["--listen", &format!("{}:{PORT}", net.ip[i])])
            .args(args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        while Instant::now() < deadline {
            if node.status().is_some() {
                return Daemon(child);
            }
            if child.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        assert!(
            Instant::now() < deadline,
            "node {}'s daemon did not start: {}",
            node.id,
            std::fs::read_to_string(node.dir.with_extension("log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Waits until `f` holds, at most [`WAIT`].
pub fn until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

pub type Sections = Vec<(Vec<u8>, Vec<u8>)>;

/// A copy's last frame and every section, sorted; `None` if it cannot be
/// opened or read now.
pub fn sections(node: &Node, name: &str) -> Option<(u64, Sections)> {
    let c = node.service().open(name, OpenFlags::READ, None).ok()?;
    let mut out = Vec::new();
    for d in c.sections(ckpt::SectionsChosen::Any).ok()? {
        let id = d.id.as_bytes().to_vec();
        out.push((id.clone(), c.read_section(&id).ok()?));
    }
    out.sort();
    Some((c.segment().last_seq(), out))
}

/// Waits until `b`'s copy equals `a`'s byte for byte; how long it took.
pub fn converge(a: &Node, b: &Node, name: &str) -> Duration {
    let t = Instant::now();
    until("the replica to equal the primary", || {
        let want = sections(a, name);
        want.is_some() && sections(b, name) == want
    });
    t.elapsed()
}

/// Creates checkpoint `name` on `node` (16 sections of 4 KiB), active here
/// if asynchronous.
pub fn create(node: &Node, name: &str, mode: UpdateMode) -> ckpt::Checkpoint {
    let attrs = CreationAttributes {
        flags: CreationFlags::new(mode, mode.is_asynchronous()),
        ..CreationAttributes::new(16, 4096)
    };
    let rwc = OpenFlags::READ | OpenFlags::WRITE | OpenFlags::CREATE;
    let c = node.service().open(name, rwc, Some(&attrs)).unwrap();
    if mode.is_asynchronous() {
        c.set_active_replica().unwrap();
    }
    c
}

/// One update: update `n`, 4 KiB, into section `s{n % 16}`.
pub fn update(c: &ckpt::Checkpoint, n: u64) -> Result<(), ckpt::WriteError> {
    let mut data = vec![0u8; 4096];
    let id = format!("s{}", n % 16);
    data[..8].copy_from_slice(&n.to_le_bytes());
    match c.overwrite(id.as_bytes(), &data) {
        Err(ckpt::WriteError::NotExist) => c
            .create_section(id.as_bytes(), Time::END, &data)
            .map(drop)
            .map_err(|_| ckpt::WriteError::TryAgain),
        other => other,
    }
}

/// Writes `n` updates, starting from `*next`.
pub fn write(c: &ckpt::Checkpoint, next: &mut u64, n: u64) {
    for _ in 0..n {
        update(c, *next).unwrap();
        *next += 1;
    }
}

/// True if `node`'s log says a thread panicked (the log is printed).
pub fn panicked(node: &Node) -> bool {
    let log = std::fs::read_to_string(node.dir.with_extension("log")).unwrap_or_default();
    let bad = log.contains("panicked");
    if bad {
        eprintln!("{log}");
    }
    bad
}

/// Prints the logs in `0` if the test is failing (dropped during a panic),
/// so a failure in CI shows what the daemons said.
pub struct ShowLogsOnFailure(pub Vec<PathBuf>);

impl Drop for ShowLogsOnFailure {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        for path in &self.0 {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(80).collect();
            eprintln!("---- {} (last {} lines)", path.display(), tail.len());
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}
