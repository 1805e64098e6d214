//! The engine on hostile hosts: writers in other PID namespaces (containers
//! sharing /dev/shm), and claim holders that are stopped.
//!
//! The processes are this test binary re-executed as `hostile_child` with a
//! role (`hold`: take the claim and keep it inside `overwrite_with` until
//! told; `write`: one overwrite, reporting the result and the recovery count;
//! `write-loop`: overwrites until killed),
//! in this PID namespace or under `unshare --pid --fork --mount-proc`. Tests
//! that need a new PID namespace skip with a message where `unshare` cannot
//! make one (no root, no user namespaces).

use std::io::{BufRead, BufReader, Lines, Write};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::Duration;

mod mounts;

use ckpt_core::{CheckpointName, CreationAttributes, OpenFlags, Time};
use ckpt_shm::{Config, Segment};

const ENV_DIR: &str = "CKPT_HOSTILE_DIR";
const ENV_ROLE: &str = "CKPT_HOSTILE_ROLE";
const OLD: u8 = 0x00;
const HELD: u8 = 0xAA;
const WRITTEN: u8 = 0xBB;

fn name() -> CheckpointName {
    CheckpointName::new("hostile").unwrap()
}

fn config(dir: &Path, claim_timeout: Duration) -> Config {
    Config {
        claim_timeout,
        ..Config::with_dir(dir)
    }
}

/// A fresh segment directory holding checkpoint `hostile` with section `s`
/// (64 bytes of OLD), kept open by the returned segment.
fn setup(tag: &str) -> (tempfile::TempDir, Segment) {
    setup_retained(tag, 60_000_000_000)
}

/// [`setup`] with a retention duration of `retention_ns`.
fn setup_retained(tag: &str, retention_ns: i64) -> (tempfile::TempDir, Segment) {
    let dir = tempfile::Builder::new()
        .prefix(&format!("ckpt-hostile-{tag}-"))
        .tempdir_in("/dev/shm")
        .unwrap();
    let attrs = CreationAttributes {
        retention_ns,
        ..CreationAttributes::new(4, 64)
    };
    let flags = OpenFlags::READ | OpenFlags::WRITE | OpenFlags::CREATE;
    let seg = Segment::open(
        &config(dir.path(), Duration::from_secs(2)),
        &name(),
        flags,
        Some(&attrs),
    )
    .unwrap();
    seg.create_section(Some(b"s"), Time::END, &[OLD; 64])
        .unwrap();
    (dir, seg)
}

/// True if `unshare` can start a process in a new PID namespace here; says
/// why not otherwise.
fn pid_namespaces_available() -> bool {
    let ok = Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc", "true"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!(
            "SKIPPED: `unshare --pid --fork --mount-proc` does not work here (needs root or \
             user namespaces): cannot test writers in other PID namespaces"
        );
    }
    ok
}

/// A child process in its role, and its output.
struct Proc {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Proc {
    fn start(role: &str, dir: &Path, new_pid_namespace: bool) -> Proc {
        let exe = std::env::current_exe().unwrap();
        let mut cmd = if new_pid_namespace {
            let mut c = Command::new("unshare");
            // --kill-child: killing `unshare` kills the namespace's init (our
            // child), as a container runtime stopping a container would.
            c.args(["--pid", "--fork", "--mount-proc", "--kill-child"])
                .arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        let mut child = cmd
            .args([
                "hostile_child",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(ENV_DIR, dir)
            .env(ENV_ROLE, role)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        Proc { child, lines }
    }

    /// What follows `prefix` on the first output line that has it (the test
    /// harness may have started the line with the test's name).
    fn expect(&mut self, prefix: &str) -> String {
        for line in self.lines.by_ref() {
            let line = line.unwrap();
            if let Some(at) = line.find(prefix) {
                return line[at + prefix.len()..].trim().to_string();
            }
        }
        panic!("the child exited before printing {prefix:?}");
    }

    /// Tells a holder to finish its write.
    fn release(&mut self) {
        let stdin = self.child.stdin.as_mut().unwrap();
        stdin.write_all(b"go\n").unwrap();
        stdin.flush().unwrap();
    }

    /// Kills the child (for `unshare`, the whole namespace: --kill-child)
    /// and returns once every process that had its output is gone. Its stdin
    /// stays open until then, so a holder cannot finish instead of dying.
    fn kill(mut self) {
        // `Child::wait` closes stdin: hold it ourselves until the end.
        let stdin = self.child.stdin.take();
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        for line in self.lines.by_ref() {
            assert!(line.is_ok());
        }
        drop(stdin);
    }

    fn finish(mut self) {
        drop(self.child.stdin.take());
        assert!(self.child.wait().unwrap().success());
    }
}

/// The child's side: `hold` or `write`, as `ENV_ROLE` says.
#[test]
fn hostile_child() {
    let (Ok(dir), Ok(role)) = (std::env::var(ENV_DIR), std::env::var(ENV_ROLE)) else {
        return; // Only meaningful when a test below starts it.
    };
    let rw = OpenFlags::READ | OpenFlags::WRITE;
    let seg = Segment::open(
        &config(Path::new(&dir), Duration::from_secs(10)),
        &name(),
        rw,
        None,
    )
    .unwrap();
    let s = seg.lookup(b"s").unwrap().unwrap();
    match role.as_str() {
        "hold" => {
            let result = seg.overwrite_with(s, 64, |buf| {
                println!("holding");
                // Until the parent says go (or closes our stdin).
                let mut line = String::new();
                let _ = std::io::stdin().read_line(&mut line);
                buf.fill(HELD);
            });
            println!("held {result:?}");
        }
        "open" => {
            // Keeps it open until the parent kills us.
            println!("opened");
            let mut line = String::new();
            let _ = std::io::stdin().read_line(&mut line);
        }
        "write-loop" => {
            // Overwrites until killed.
            println!("looping");
            let mut data = [WRITTEN; 64];
            for n in 0u64.. {
                data[..8].copy_from_slice(&n.to_le_bytes());
                let _ = seg.write(s, None, &data);
            }
        }
        "write" => {
            let result = seg.write(s, None, &[WRITTEN; 64]);
            let recoveries = seg
                .header()
                .recoveries
                .load(std::sync::atomic::Ordering::SeqCst);
            println!("wrote {result:?} recoveries {recoveries}");
        }
        other => panic!("unknown role {other}"),
    }
}

fn contents(seg: &Segment) -> Vec<u8> {
    let s = seg.lookup(b"s").unwrap().unwrap();
    seg.read_to_vec(s).unwrap().0
}

fn recoveries(seg: &Segment) -> u64 {
    seg.header()
        .recoveries
        .load(std::sync::atomic::Ordering::SeqCst)
}

/// Finding 1: a claim holder in one PID namespace and a writer in another.
/// Each used to read the other's pid in its own /proc, find nothing (or
/// another process), and steal the claim from a live holder: two writers at
/// once. Now the writer waits for the holder, whichever side is the
/// container, and nothing is recovered.
#[test]
fn a_live_holder_in_another_pid_namespace_keeps_its_claim() {
    if !pid_namespaces_available() {
        return;
    }
    for holder_in_container in [true, false] {
        let (dir, seg) = setup("live");
        let mut holder = Proc::start("hold", dir.path(), holder_in_container);
        holder.expect("holding");
        let mut writer = Proc::start("write", dir.path(), !holder_in_container);
        // Give the writer time to find the claim held (it must not steal it).
        std::thread::sleep(Duration::from_millis(300));
        holder.release();
        let held = holder.expect("held");
        let wrote = writer.expect("wrote");
        holder.finish();
        writer.finish();
        let case = if holder_in_container {
            "holder in a new PID namespace"
        } else {
            "writer in a new PID namespace"
        };
        assert_eq!(held, "Ok(())", "{case}: the holder's write");
        assert_eq!(wrote, "Ok(()) recoveries 0", "{case}: the writer waited");
        assert_eq!(recoveries(&seg), 0, "{case}: a live claim was stolen");
        assert_eq!(
            contents(&seg),
            [WRITTEN; 64],
            "{case}: the writer came second"
        );
    }
}

/// Finding 1, the other half: a holder in another PID namespace that dies
/// (its container is killed) is recovered at once, as a local one is.
#[test]
fn a_dead_holder_in_another_pid_namespace_is_recovered() {
    if !pid_namespaces_available() {
        return;
    }
    let (dir, seg) = setup("dead");
    let mut holder = Proc::start("hold", dir.path(), true);
    holder.expect("holding");
    holder.kill();
    let mut writer = Proc::start("write", dir.path(), false);
    let wrote = writer.expect("wrote");
    writer.finish();
    assert_eq!(wrote, "Ok(()) recoveries 1");
    assert_eq!(contents(&seg), [WRITTEN; 64]);
}

/// CPU time this thread has used.
fn thread_cpu() -> Duration {
    // SAFETY: getrusage writes the rusage we own.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        assert_eq!(libc::getrusage(libc::RUSAGE_THREAD, &mut usage), 0);
        usage
    };
    let t = |tv: libc::timeval| Duration::new(tv.tv_sec as u64, tv.tv_usec as u32 * 1000);
    t(usage.ru_utime) + t(usage.ru_stime)
}

/// Finding 3: with the claim holder stopped (SIGSTOP, a debugger, a frozen
/// cgroup), another writer used to spin a whole core until its claim timeout.
/// Now it sleeps: a one-second wait that ends in TRY_AGAIN costs a small part
/// of that second in CPU time.
#[test]
fn a_writer_waiting_for_a_stopped_holder_sleeps() {
    let (dir, _seg) = setup("stopped");
    let mut holder = Proc::start("hold", dir.path(), false);
    holder.expect("holding");
    let pid = holder.child.id() as i32;
    // SAFETY: kill(2) on our own child; no memory involved.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);
    let rw = OpenFlags::READ | OpenFlags::WRITE;
    let timeout = Duration::from_secs(1);
    let seg = Segment::open(&config(dir.path(), timeout), &name(), rw, None).unwrap();
    let s = seg.lookup(b"s").unwrap().unwrap();
    let cpu_before = thread_cpu();
    let started = std::time::Instant::now();
    let result = seg.write(s, None, &[WRITTEN; 64]);
    let waited = started.elapsed();
    let cpu = thread_cpu() - cpu_before;
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGCONT) }, 0);
    holder.release();
    assert_eq!(holder.expect("held"), "Ok(())");
    holder.finish();
    println!("waited {waited:?} for a stopped holder, using {cpu:?} of CPU");
    assert_eq!(result, Err(ckpt_core::error::WriteError::TryAgain));
    assert!(waited >= timeout, "gave up early: {waited:?}");
    assert!(
        cpu < waited / 4,
        "a waiter burned {cpu:?} of CPU in {waited:?}: it must sleep, not spin"
    );
    assert_eq!(contents(&seg), [HELD; 64]);
}

/// A snapshot's catch-up horizon (`Segment::settled_end`) when a writer died
/// with its frame in flight (reserved in the ring, not published): the
/// horizon is made exact under the claim, which recovers the dead writer's
/// mutation (its frame published or rolled back) first, so it never names a
/// frame the log will not publish, which a staged replica would wait for
/// until its link ends. The writer, overwriting in a loop, is killed at
/// random moments until one leaves a frame in flight.
#[test]
fn a_snapshot_horizon_past_a_dead_writers_frame_in_flight_is_made_exact() {
    let (dir, seg) = setup("in_flight");
    let h = seg.header();
    let in_flight = || {
        h.log_reserve.load(std::sync::atomic::Ordering::SeqCst)
            > h.log_tail.load(std::sync::atomic::Ordering::SeqCst)
    };
    let mut kills = 0;
    while !in_flight() {
        kills += 1;
        assert!(kills <= 400, "no kill of 400 left a frame in flight");
        let mut writer = Proc::start("write-loop", dir.path(), false);
        writer.expect("looping");
        std::thread::sleep(Duration::from_micros(200 + 97 * (kills % 20)));
        writer.kill();
    }
    // What a snapshot taken now says it holds: through the frame in flight.
    let end_seq = seg.last_seq() + 1;
    let started = std::time::Instant::now();
    let settled = seg.settled_end(end_seq);
    let took = started.elapsed();
    let published = h.log_seq.load(std::sync::atomic::Ordering::SeqCst);
    println!(
        "frame in flight after {kills} kills; horizon {settled} of {end_seq} in {took:?}, \
         published through {published}"
    );
    assert!(!in_flight(), "the dead writer's frame is still in flight");
    assert!(
        settled <= published,
        "the horizon {settled} names a frame the log never published (through {published})"
    );
    assert!(settled + 1 >= end_seq, "the horizon fell below the copy's");
    assert!(took < Duration::from_secs(5), "took {took:?}");
}

const ENV_SMALL_FS: &str = "CKPT_HOSTILE_SMALL_FS";

/// The child's side of the full-filesystem test: an 8 MiB tmpfs, mounted in
/// its own mount namespace at `ENV_SMALL_FS`.
#[test]
fn small_fs_child() {
    let Ok(dir) = std::env::var(ENV_SMALL_FS) else {
        return; // Only meaningful when the test below starts it.
    };
    let dir = Path::new(&dir);
    let rwc = OpenFlags::READ | OpenFlags::WRITE | OpenFlags::CREATE;
    let open = |name: &str, attrs: &CreationAttributes| {
        let config = Config {
            log_bytes: Some(1 << 20),
            ..Config::with_dir(dir)
        };
        Segment::open(
            &config,
            &CheckpointName::new(name).unwrap(),
            rwc,
            Some(attrs),
        )
    };
    let list = || {
        let config = Config::with_dir(dir);
        let listed = ckpt_shm::dir::list(&config).unwrap();
        for l in &listed {
            let mapped = l.segment.as_ref().unwrap();
            let mut n = 0;
            mapped.for_each_section(ckpt_core::SectionsChosen::Any, |_| n += 1);
            println!("listed {} with {n} sections", mapped.name());
        }
        listed.len()
    };
    // 2^22 one-byte sections: more than a gigabyte of slot headers and index
    // that every call touches. Creation fails; nothing is left behind.
    let many = CreationAttributes::new(1 << 22, 1);
    let e = open("many", &many).err().unwrap();
    assert_eq!(e, ckpt_core::error::OpenError::NoResources);
    assert_eq!(list(), 0, "a failed creation leaves nothing behind");

    // Two 1 GiB sections at most: metadata and ring fit, the data does not.
    // Data pages are allocated as sections are written.
    let big = CreationAttributes {
        retention_ns: 0,
        ..CreationAttributes::new(2, 1 << 30)
    };
    let seg = open("big", &big).unwrap();
    let (a, _) = seg
        .create_section(Some(b"a"), Time::END, &[7; 1024])
        .unwrap();
    // Reads and listing fault no memory in: the filesystem's use is unchanged.
    let used = || {
        let c = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: statvfs fills the struct we own from a NUL-terminated path.
        unsafe {
            let mut st: libc::statvfs = std::mem::zeroed();
            assert_eq!(libc::statvfs(c.as_ptr(), &mut st), 0);
            st.f_blocks - st.f_bfree
        }
    };
    let before = used();
    assert_eq!(list(), 1);
    let mut buf = vec![0u8; 1 << 20];
    assert_eq!(seg.read(a, 0, &mut buf).unwrap().0, 1024);
    assert_eq!(used(), before, "reading and listing allocated memory");
    let sixteen_mib = vec![9u8; 16 << 20];
    assert_eq!(
        seg.write(a, None, &sixteen_mib),
        Err(ckpt_core::error::WriteError::NoMemory)
    );
    assert_eq!(
        seg.read_to_vec(a).unwrap().0,
        vec![7; 1024],
        "the old version stays"
    );
    assert_eq!(
        seg.create_section(Some(b"b"), Time::END, &sixteen_mib)
            .err(),
        Some(ckpt_core::error::SectionCreateError::NoMemory)
    );
    let one_mib = vec![5u8; 1 << 20];
    seg.write(a, None, &one_mib).unwrap();
    assert_eq!(seg.read_to_vec(a).unwrap().0, one_mib);
    assert_eq!(list(), 1);
    println!("small fs: ok");
}

/// Finding 2: on a filesystem that cannot back a checkpoint, creation or the
/// write that needs the memory fails with NO_RESOURCES; no call ever dies of
/// SIGBUS (before: creation succeeded sparse, and iterating, listing or
/// creating sections then killed the process).
#[test]
fn a_full_filesystem_is_an_error_never_a_sigbus() {
    if !mounts::private_mounts_available() {
        eprintln!(
            "SKIPPED: `unshare --mount` does not work here (needs root): cannot test a full \
             filesystem"
        );
        return;
    }
    let scratch = tempfile::tempdir().unwrap();
    let mnt = scratch.path().join("small");
    std::fs::create_dir(&mnt).unwrap();
    let out = mounts::run_with_mount(
        "tmpfs",
        "size=8m,mode=0700",
        &mnt,
        "small_fs_child",
        ENV_SMALL_FS,
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(out.status.signal(), None, "the child died of a signal");
    assert!(out.status.success());
    assert!(stdout.contains("small fs: ok"));
}

// ---------------------------------------------------------------------------
// Finding 4: the segment directory is checked, and nothing in it is followed.

fn rw_create() -> OpenFlags {
    OpenFlags::READ | OpenFlags::WRITE | OpenFlags::CREATE
}

fn small_attrs() -> CreationAttributes {
    CreationAttributes {
        retention_ns: 60_000_000_000,
        ..CreationAttributes::new(4, 64)
    }
}

/// A directory others can write to, one another user owns, and a symlink to
/// a good directory are all refused (before: any existing directory was used,
/// so a user who made /dev/shm/ckpt first, 0777, controlled every name in it).
#[test]
fn an_untrusted_segment_directory_is_refused() {
    use ckpt_core::error::OpenError;
    use std::os::unix::fs::PermissionsExt;
    let scratch = tempfile::tempdir_in("/dev/shm").unwrap();
    let open = |dir: &Path| {
        Segment::open(
            &Config::with_dir(dir),
            &name(),
            rw_create(),
            Some(&small_attrs()),
        )
        .err()
    };
    let world = scratch.path().join("world");
    std::fs::create_dir(&world).unwrap();
    std::fs::set_permissions(&world, std::fs::Permissions::from_mode(0o777)).unwrap();
    assert_eq!(open(&world), Some(OpenError::UntrustedDir), "0777");
    let listed = ckpt_shm::dir::list(&Config::with_dir(&world));
    assert_eq!(
        listed.err().map(|e| e.kind()),
        Some(std::io::ErrorKind::PermissionDenied)
    );
    let group = scratch.path().join("group");
    std::fs::create_dir(&group).unwrap();
    std::fs::set_permissions(&group, std::fs::Permissions::from_mode(0o770)).unwrap();
    assert_eq!(
        open(&group),
        Some(OpenError::UntrustedDir),
        "0770 without group access"
    );

    let good = scratch.path().join("good");
    assert_eq!(
        open(&good),
        None,
        "a directory ckpt makes itself is trusted"
    );
    let link = scratch.path().join("link");
    std::os::unix::fs::symlink(&good, &link).unwrap();
    assert_eq!(open(&link), Some(OpenError::UntrustedDir), "a symlink");

    let theirs = scratch.path().join("theirs");
    std::fs::create_dir(&theirs).unwrap();
    std::fs::set_permissions(&theirs, std::fs::Permissions::from_mode(0o700)).unwrap();
    if std::os::unix::fs::chown(&theirs, Some(60_101), Some(60_101)).is_ok() {
        assert_eq!(
            open(&theirs),
            Some(OpenError::UntrustedDir),
            "another user's"
        );
    } else {
        eprintln!("SKIPPED (one case): chown needs root: another user's directory");
    }
}

/// A symlink planted under a checkpoint's file name, pointing at another
/// directory's checkpoint, is never followed: open refuses it, the checkpoint
/// it points to is untouched, unlink removes the symlink only. A FIFO there
/// is refused at once (an open for writing would block).
#[test]
fn symlinks_and_fifos_under_a_checkpoint_name_are_not_followed() {
    use ckpt_core::error::{OpenError, UnlinkError};
    let victim_dir = tempfile::tempdir_in("/dev/shm").unwrap();
    let victim_config = Config::with_dir(victim_dir.path());
    let victim = Segment::open(&victim_config, &name(), rw_create(), Some(&small_attrs())).unwrap();
    victim
        .create_section(Some(b"s"), Time::END, &[OLD; 64])
        .unwrap();
    let file = ckpt_shm::dir::file_name(&name());

    let dir = tempfile::tempdir_in("/dev/shm").unwrap();
    let config = Config::with_dir(dir.path());
    std::os::unix::fs::symlink(victim_dir.path().join(&file), dir.path().join(&file)).unwrap();
    for flags in [rw_create(), OpenFlags::READ | OpenFlags::WRITE] {
        let attrs = flags.contains(OpenFlags::CREATE).then(small_attrs);
        let e = Segment::open(&config, &name(), flags, attrs.as_ref()).err();
        assert_eq!(e, Some(OpenError::Permission), "{flags:?}");
    }
    let listed = ckpt_shm::dir::list(&config).unwrap();
    assert_eq!(listed.len(), 1);
    assert!(
        listed[0].segment.is_err(),
        "listing does not follow it either"
    );
    assert_eq!(ckpt_shm::dir::unlink(&config, &name()), Ok(()));
    assert!(std::fs::symlink_metadata(dir.path().join(&file)).is_err());
    assert_eq!(
        contents(&victim),
        [OLD; 64],
        "the victim checkpoint is untouched"
    );
    assert!(victim_dir.path().join(&file).exists(), "and still there");
    assert_eq!(
        ckpt_shm::dir::unlink(&config, &name()),
        Err(UnlinkError::NotExist)
    );

    let fifo =
        std::ffi::CString::new(dir.path().join(&file).as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: mkfifo with a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
    let e = Segment::open(&config, &name(), OpenFlags::READ | OpenFlags::WRITE, None).err();
    assert_eq!(e, Some(OpenError::Permission), "a FIFO");
}

// ---------------------------------------------------------------------------
// Finding 5: group sharing between two users.

const ENV_GROUP: &str = "CKPT_HOSTILE_GROUP_ACCESS";
/// Ids no account on the machine uses (setuid to them needs no account).
const USER_A: u32 = 60_101;
const USER_B: u32 = 60_102;
const USER_C: u32 = 60_103;
const SHARED_GROUP: u32 = 60_200;

/// The child's side of the group test: `group-create` or `group-write`.
#[test]
fn group_child() {
    let (Ok(dir), Ok(role)) = (std::env::var(ENV_DIR), std::env::var(ENV_ROLE)) else {
        return; // Only meaningful when the test below starts it.
    };
    let config = Config {
        group_access: std::env::var(ENV_GROUP).is_ok_and(|v| v == "1"),
        ..Config::with_dir(&dir)
    };
    let shared = CheckpointName::new("shared").unwrap();
    match role.as_str() {
        "group-create" => {
            let seg = Segment::open(&config, &shared, rw_create(), Some(&small_attrs())).unwrap();
            seg.create_section(Some(b"s"), Time::END, &[OLD; 64])
                .unwrap();
            println!("result created");
        }
        "group-write" => {
            let rw = OpenFlags::READ | OpenFlags::WRITE;
            match Segment::open(&config, &shared, rw, None) {
                Ok(seg) => {
                    let s = seg.lookup(b"s").unwrap().unwrap();
                    let wrote = seg.write(s, None, &[WRITTEN; 64]);
                    let back = seg.read_to_vec(s).unwrap().0[0];
                    println!("result wrote {wrote:?} read {back:#x}");
                }
                Err(e) => println!("result open {e:?}"),
            }
        }
        other => panic!("unknown role {other}"),
    }
}

/// Runs `group_child` as user `uid` with primary group `gid` and
/// supplementary `groups`; its result line, or None if it could not run.
fn as_user(
    role: &str,
    dir: &Path,
    group_access: bool,
    (uid, gid, groups): (u32, u32, &[u32]),
) -> Option<String> {
    use std::os::unix::process::CommandExt;
    let groups: Vec<libc::gid_t> = groups.to_vec();
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["group_child", "--exact", "--nocapture", "--test-threads=1"])
        .env(ENV_DIR, dir)
        .env(ENV_ROLE, role)
        .env(ENV_GROUP, if group_access { "1" } else { "0" })
        .stderr(Stdio::inherit());
    // SAFETY: the closure runs in the forked child before exec and only makes
    // three system calls (async-signal-safe), on memory it owns.
    unsafe {
        cmd.pre_exec(move || {
            let ok = libc::setgroups(groups.len(), groups.as_ptr()) == 0
                && libc::setgid(gid) == 0
                && libc::setuid(uid) == 0;
            match ok {
                true => Ok(()),
                false => Err(std::io::Error::last_os_error()),
            }
        })
    };
    let out = cmd.output().ok()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find_map(|l| Some(l.split_once("result ")?.1.to_string()));
    if line.is_none() {
        eprintln!("group child {role} as {uid}: {}", out.status);
    }
    line
}

/// Two users of one group share a checkpoint with `CKPT_GROUP_ACCESS=1`: the
/// first creates the directory (02770, the group's) and the checkpoint
/// (0660), the second opens and writes it (before: refused, the owner check
/// wanted the same user). A user outside the group, and a member without
/// group access configured, are refused.
#[test]
fn group_members_share_checkpoints_with_group_access() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIPPED: switching to test users needs root");
        return;
    }
    let scratch = tempfile::tempdir_in("/dev/shm").unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        // Like /dev/shm: anyone may make a directory in it.
        std::fs::set_permissions(scratch.path(), std::fs::Permissions::from_mode(0o1777)).unwrap();
    }
    let dir = scratch.path().join("shared");
    let a = (USER_A, SHARED_GROUP, &[SHARED_GROUP][..]);
    let b = (USER_B, USER_B, &[SHARED_GROUP][..]);
    let c = (USER_C, USER_C, &[][..]);
    let Some(created) = as_user("group-create", &dir, true, a) else {
        eprintln!("SKIPPED: the test binary cannot run as another user here");
        return;
    };
    assert_eq!(created, "created");
    {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(&dir).unwrap();
        assert_eq!(meta.mode() & 0o7777, 0o2770, "a shared group directory");
        assert_eq!(meta.gid(), SHARED_GROUP);
    }
    assert_eq!(
        as_user("group-write", &dir, true, b).as_deref(),
        Some("wrote Ok(()) read 0xbb"),
        "a member of the group writes"
    );
    assert_eq!(
        as_user("group-write", &dir, true, c).as_deref(),
        Some("open Permission"),
        "a user outside the group cannot"
    );
    assert_eq!(
        as_user("group-write", &dir, false, b).as_deref(),
        Some("open UntrustedDir"),
        "without group access, a group-writable directory is not trusted"
    );
}

// ---------------------------------------------------------------------------
// Finding 7: opens under churn.

const ENV_CHURN_MS: &str = "CKPT_HOSTILE_CHURN_MS";
const CHURN_PROCESSES: usize = 4;
const CHURN_THREADS: usize = 4;

/// The child's side of the churn test: threads that open (creating), close
/// and now and then unlink one checkpoint, for `ENV_CHURN_MS`; prints its
/// counts of opens and of failures by error.
#[test]
fn churn_child() {
    let (Ok(dir), Ok(ms)) = (std::env::var(ENV_DIR), std::env::var(ENV_CHURN_MS)) else {
        return; // Only meaningful when the test below starts it.
    };
    let until = std::time::Instant::now() + Duration::from_millis(ms.parse().unwrap());
    let config = Config::with_dir(&dir);
    let threads: Vec<_> = (0..CHURN_THREADS)
        .map(|t| {
            let config = config.clone();
            std::thread::spawn(move || {
                let mut opens = 0u64;
                let mut failures = std::collections::BTreeMap::<String, u64>::new();
                let mut i = 0u64;
                while std::time::Instant::now() < until {
                    i += 1;
                    let attrs = CreationAttributes {
                        retention_ns: if t % 2 == 0 { 0 } else { 1_000_000 },
                        ..CreationAttributes::new(4, 64)
                    };
                    match Segment::open(&config, &name(), rw_create(), Some(&attrs)) {
                        Ok(seg) => {
                            opens += 1;
                            drop(seg);
                        }
                        // The other threads' attributes: a legitimate refusal.
                        Err(ckpt_core::error::OpenError::AttributesDiffer) => {}
                        Err(e) => *failures.entry(format!("open {e:?}")).or_default() += 1,
                    }
                    if i % 7 == 0 {
                        match ckpt_shm::dir::unlink(&config, &name()) {
                            Ok(()) | Err(ckpt_core::error::UnlinkError::NotExist) => {}
                            Err(e) => *failures.entry(format!("unlink {e:?}")).or_default() += 1,
                        }
                    }
                }
                (opens, failures)
            })
        })
        .collect();
    let mut opens = 0;
    let mut failures = std::collections::BTreeMap::<String, u64>::new();
    for t in threads {
        let (o, f) = t.join().unwrap();
        opens += o;
        for (k, v) in f {
            *failures.entry(k).or_default() += v;
        }
    }
    println!("churn opens {opens} failures {failures:?}");
}

/// Finding 7: processes and threads opening, closing and unlinking one
/// checkpoint at once. Every open without a real conflict succeeds (before:
/// about 1 in 1,000 returned TRY_AGAIN).
#[test]
fn opens_under_churn_do_not_fail() {
    let dir = tempfile::tempdir_in("/dev/shm").unwrap();
    let children: Vec<Child> = (0..CHURN_PROCESSES)
        .map(|_| {
            Command::new(std::env::current_exe().unwrap())
                .args(["churn_child", "--exact", "--nocapture", "--test-threads=1"])
                .env(ENV_DIR, dir.path())
                .env(ENV_CHURN_MS, "3000")
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut total = 0u64;
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        let stdout = String::from_utf8_lossy(&out.stdout);
        let line = stdout
            .lines()
            .find_map(|l| Some(l.split_once("churn opens ")?.1.to_string()))
            .unwrap();
        println!("{line}");
        let (opens, failures) = line.split_once(" failures ").unwrap();
        total += opens.parse::<u64>().unwrap();
        assert_eq!(failures, "{}", "failed calls under churn");
    }
    assert!(total > 0);
}

// ---------------------------------------------------------------------------
// Finding 6: damaged mutable words.

fn open_rw(dir: &Path) -> Segment {
    Segment::open(
        &Config::with_dir(dir),
        &name(),
        OpenFlags::READ | OpenFlags::WRITE,
        None,
    )
    .unwrap()
}

/// A damaged section count or memory counter no longer refuses every create
/// and write: the writer checks them against the slots and repairs them, on
/// its next writable open and on the failure path of an open writer (before:
/// NO_SPACE for every create).
#[test]
fn damaged_counters_are_recounted_from_the_slots() {
    use std::sync::atomic::Ordering::SeqCst;
    let (dir, seg) = setup("counters");
    let h = seg.header();
    // An open writer meets the damage.
    h.sections_live.store(u64::MAX, SeqCst);
    h.memory_used.store(u64::MAX / 2, SeqCst);
    seg.create_section(Some(b"t"), Time::END, &[1; 8]).unwrap();
    let s = seg.lookup(b"s").unwrap().unwrap();
    seg.write(s, None, &[2; 64]).unwrap();
    assert_eq!(seg.usage(), (2, 72));
    assert!(h.repairs.load(SeqCst) >= 1);
    // A writable open that finds the checkpoint unused repairs it before
    // anyone meets it.
    h.sections_live.store(4, SeqCst);
    drop(seg);
    let other = open_rw(dir.path());
    assert_eq!(other.usage(), (2, 72));
    other
        .create_section(Some(b"u"), Time::END, &[3; 8])
        .unwrap();
}

/// A damaged index entry made a listed section unreadable by its id (NOT_EXIST):
/// a writable open rebuilds the index from the slots.
#[test]
fn a_damaged_index_entry_is_rebuilt_from_the_slots() {
    use std::os::unix::fs::FileExt;
    let (dir, seg) = setup("index");
    seg.create_section(Some(b"t"), Time::END, &[1; 8]).unwrap();
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(seg.path())
        .unwrap();
    let g = *seg.geometry();
    let mut damaged = 0;
    for i in 0..g.index_buckets {
        let at = g.index_offset + 8 * i;
        let mut word = [0u8; 8];
        file.read_at(&mut word, at).unwrap();
        if u64::from_le_bytes(word) != 0 {
            // Flip the tag and the slot's low bit: the entry now names garbage.
            file.write_at(
                &(u64::from_le_bytes(word) ^ 0x0001_0000_0000_fffc).to_le_bytes(),
                at,
            )
            .unwrap();
            damaged += 1;
        }
    }
    assert_eq!(damaged, 2);
    assert_eq!(
        seg.lookup(b"s").unwrap(),
        None,
        "the damage hides the sections"
    );
    drop(seg);
    let writer = open_rw(dir.path());
    assert!(
        writer
            .header()
            .repairs
            .load(std::sync::atomic::Ordering::SeqCst)
            >= 1
    );
    for id in [&b"s"[..], b"t"] {
        let found = writer.lookup(id).unwrap().expect("found again");
        assert!(writer.read_to_vec(found).is_ok());
    }
    let mut listed = 0;
    writer.for_each_section(ckpt_core::SectionsChosen::Any, |v| {
        assert!(writer.lookup(v.id).unwrap().is_some());
        listed += 1;
    });
    assert_eq!(listed, 2);
}

/// A damaged retention (negative) or last-close time never deletes a
/// checkpoint as expired: a negative retention is reported as corrupt, an
/// implausible last close is ignored (before: open deleted the file).
#[test]
fn damaged_retention_words_never_delete_a_checkpoint() {
    use std::sync::atomic::Ordering::SeqCst;
    let (dir, seg) = setup("retention");
    let path = seg.path().to_path_buf();
    seg.header().retention_ns.store(-5, SeqCst);
    drop(seg);
    let config = Config::with_dir(dir.path());
    let rw = OpenFlags::READ | OpenFlags::WRITE;
    assert_eq!(
        Segment::open(&config, &name(), rw, None).err(),
        Some(ckpt_core::error::OpenError::Corrupt)
    );
    let listed = ckpt_shm::dir::list(&config).unwrap();
    assert!(listed.iter().all(|l| !l.removed));
    assert!(path.exists(), "a damaged retention deleted the checkpoint");

    // A plausible retention, but a last close long before creation.
    {
        use ckpt_shm::layout::SegmentHeader;
        use std::os::unix::fs::FileExt;
        let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        let at = std::mem::offset_of!(SegmentHeader, retention_ns) as u64;
        file.write_at(&1i64.to_le_bytes(), at).unwrap();
        // (The close above recorded the real last close: damage it after.)
        let at = std::mem::offset_of!(SegmentHeader, last_close_ns) as u64;
        file.write_at(&1i64.to_le_bytes(), at).unwrap();
    }
    let listed = ckpt_shm::dir::list(&config).unwrap();
    assert!(listed.iter().all(|l| !l.removed));
    let seg = Segment::open(&config, &name(), rw, None).unwrap();
    assert_eq!(contents(&seg), [OLD; 64]);
    assert!(path.exists());
}

/// A `fork`ed child shares its parent's file descriptions, so its lease:
/// dropping an inherited handle in the child must not free the parent's
/// opener entry or give up its lease (before: it did, and with retention 0
/// the child's drop deleted the checkpoint the parent was using).
#[test]
fn a_forked_child_dropping_an_inherited_handle_leaves_the_parent_registered() {
    let (_dir, seg) = setup_retained("fork", 0);
    let s = seg.lookup(b"s").unwrap().unwrap();
    let path = seg.path().to_path_buf();
    // SAFETY: the child only drops the inherited handle (system calls:
    // getpid, munmap, close) and leaves with _exit.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        drop(seg);
        // SAFETY: _exit ends the child at once, running nothing of the parent's.
        unsafe { libc::_exit(0) };
    }
    let mut status = 0;
    // SAFETY: waits for our own child.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(
        path.exists(),
        "the child's drop deleted the parent's checkpoint"
    );
    assert_eq!(
        seg.live_openers().len(),
        1,
        "the parent is still registered"
    );
    seg.write(s, None, &[WRITTEN; 64]).unwrap();
    assert_eq!(contents(&seg), [WRITTEN; 64]);
}

/// A checkpoint whose last opener was killed is still deleted when its
/// retention runs out (before: the dead opener's entry kept the retention
/// clock stopped forever, and the checkpoint and its memory stayed).
#[test]
fn a_checkpoint_whose_last_opener_was_killed_expires() {
    let (dir, seg) = setup_retained("killed", 100_000_000);
    let config = Config::with_dir(dir.path());
    let path = seg.path().to_path_buf();
    let mut holder = Proc::start("hold", dir.path(), false);
    holder.expect("holding");
    drop(seg); // The child is the last opener now.
    holder.kill();
    // Someone else opens and closes; then the retention runs out.
    drop(Segment::open(&config, &name(), OpenFlags::READ, None).unwrap());
    std::thread::sleep(Duration::from_millis(300));
    let listed = ckpt_shm::dir::list(&config).unwrap();
    assert!(
        listed.iter().any(|l| l.removed),
        "the checkpoint outlived its retention"
    );
    assert!(!path.exists());
}

/// SA §3.1.1 and §3.3.2.2: a process that dies closes its checkpoints, and
/// the retention runs from that last close. So an open made after a killed
/// last opener's retention has run out finds the checkpoint gone, not its
/// old data; one made within the retention finds it. Before, the death was
/// dated at its discovery, the open itself: a checkpoint with a 200 ms
/// retention was found 1 s after its last opener's death (an adversarial C
/// program found it 4 s after). The dead process's heartbeats date it now
/// (`alive`).
#[test]
fn an_open_after_a_killed_last_openers_retention_finds_the_checkpoint_gone() {
    for (retention_ms, gone) in [(200, true), (10_000, false)] {
        let (dir, seg) = setup_retained("killed_open", retention_ms * 1_000_000);
        let config = Config::with_dir(dir.path());
        let mut opener = Proc::start("open", dir.path(), false);
        opener.expect("opened");
        drop(seg); // The child is the last opener now.
        opener.kill();
        std::thread::sleep(Duration::from_millis(1_000));
        let again = Segment::open(&config, &name(), OpenFlags::READ, None);
        if gone {
            assert!(
                matches!(again, Err(ckpt_core::error::OpenError::NotExist)),
                "retention {retention_ms} ms: opened 1 s after its last opener died: {:?}",
                again.map(|_| ())
            );
        } else {
            assert_eq!(contents(&again.unwrap()), [OLD; 64], "within its retention");
        }
    }
}

/// Descriptors are a limited resource: an open checkpoint holds one (its
/// segment file, which carries its lease), and a listing shares one directory
/// descriptor among all the segments it maps (before: each mapping also held
/// its own copy of the directory's).
#[test]
fn an_open_checkpoint_holds_one_descriptor() {
    let fds = || std::fs::read_dir("/proc/self/fd").unwrap().count();
    let dir = tempfile::tempdir_in("/dev/shm").unwrap();
    let config = Config::with_dir(dir.path());
    let names: Vec<_> = (0..20)
        .map(|i| CheckpointName::new(format!("fd{i}")).unwrap())
        .collect();
    let before = fds();
    let open: Vec<_> = names
        .iter()
        .map(|n| Segment::open(&config, n, rw_create(), Some(&small_attrs())).unwrap())
        .collect();
    let held = fds() - before;
    let listed = ckpt_shm::dir::list(&config).unwrap();
    let held_by_listing = fds() - before - held;
    drop(listed);
    drop(open);
    // Other tests of this binary run in parallel and open files too: allow a
    // little noise, far below the 2 per checkpoint this guards against.
    assert!(
        held <= 20 + 5,
        "20 open checkpoints hold {held} descriptors"
    );
    assert!(
        held_by_listing <= 20 + 5,
        "listing 20 checkpoints holds {held_by_listing} descriptors"
    );
}
