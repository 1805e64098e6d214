//! The `ckpt` command as an operator and a new user meet it.

use std::process::{Command, Output};

use ckpt::{Config, CreationAttributes, CreationFlags, OpenFlags, Service, Time, UpdateMode};

fn ckpt(dir: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ckpt"))
        .arg("--dir")
        .arg(dir)
        .args(args)
        .output()
        .unwrap()
}

/// Waits (up to 10 s) until the replica of `name` in `dir` holds `want` in
/// its `seq` section.
fn replica_holds(dir: &std::path::Path, name: &str, want: u64) {
    use std::time::{Duration, Instant};
    let deadline = Instant::now() + Duration::from_secs(10);
    let service = Service::with_config(Config::with_dir(dir));
    loop {
        let got = service
            .open(name, OpenFlags::READ, None)
            .ok()
            .and_then(|c| c.read_section(b"seq").ok())
            .map(|v| u64::from_le_bytes(v.try_into().unwrap()));
        if got == Some(want) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the replica shows {got:?}, not {want}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A free loopback port.
fn port() -> String {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string()
}

/// A `ckpt daemon` process, killed if the test fails half way.
struct Daemon(std::process::Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `ckpt --dir DIR daemon ARGS`, its log on a pipe.
fn daemon(dir: &std::path::Path, args: &[&str]) -> Daemon {
    Daemon(
        Command::new(env!("CARGO_BIN_EXE_ckpt"))
            .arg("--dir")
            .arg(dir)
            .arg("daemon")
            .args(args)
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    )
}

/// Daemons of nodes 1 and 2 on loopback ports, serving `a` and `b`, each
/// the other's peer; returns once both answer `ckpt peers`.
fn two_daemons(a: &std::path::Path, b: &std::path::Path) -> (Daemon, Daemon) {
    use std::time::{Duration, Instant};
    let (pa, pb) = (port(), port());
    let (peer_a, peer_b) = (format!("1:alpha={pa}"), format!("2:beta={pb}"));
    let da = daemon(a, &["--node", "1", "--listen", &pa, "--peer", &peer_b]);
    let db = daemon(b, &["--node", "2", "--listen", &pb, "--peer", &peer_a]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while ![a, b].iter().all(|d| ckpt(d, &["peers"]).status.success()) {
        assert!(Instant::now() < deadline, "the daemons did not start");
        std::thread::sleep(Duration::from_millis(10));
    }
    (da, db)
}

/// The service of node `node` over `dir`.
fn service(dir: &std::path::Path, node: u32) -> Service {
    Service::with_config(Config {
        node_id: node,
        ..Config::with_dir(dir)
    })
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn the_demo_passes_with_no_lost_or_repeated_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let out = ckpt(
        dir.path(),
        &["demo", "--kills", "3", "--kill-every-ms", "150"],
    );
    let t = text(&out);
    assert!(out.status.success(), "demo failed:\n{t}");
    assert!(t.contains("verdict: PASS — 3 takeovers"), "{t}");
    assert!(t.contains("numbers lost: 0, repeated: 0"), "{t}");
    assert_eq!(t.matches("took over in").count(), 3, "{t}");
    assert_eq!(t.matches('✓').count(), 3, "{t}");
}

/// The demo across two nodes, in both modes: three faults, nothing lost
/// beyond what each mode allows, both copies equal at the end.
#[test]
fn the_two_node_demo_passes_in_both_modes() {
    for mode in [&[][..], &["--sync"][..]] {
        // A directory each: the demo keeps what it made in one it is given.
        let dir = tempfile::tempdir().unwrap();
        let mut args = vec!["demo", "--nodes", "2", "--phase-ms", "300"];
        args.extend_from_slice(mode);
        let out = ckpt(dir.path(), &args);
        let t = text(&out);
        assert!(out.status.success(), "{args:?} failed:\n{t}");
        assert!(t.contains("verdict: PASS"), "{t}");
        assert!(t.contains("equal, byte for byte"), "{t}");
        assert_eq!(t.matches("the standby took over").count(), 2, "{t}");
        assert_eq!(
            t.matches("new active resumed right after: yes").count(),
            2,
            "{t}"
        );
    }
}

#[test]
fn list_sections_dump_and_unlink_show_what_is_there() {
    let dir = tempfile::tempdir().unwrap();
    let service = Service::with_config(Config::with_dir(dir.path()));
    let flags = OpenFlags::READ | OpenFlags::WRITE | OpenFlags::CREATE;
    let ck = service
        .open("safCkpt=tool", flags, Some(&CreationAttributes::new(4, 64)))
        .unwrap();
    ck.set_active_replica().unwrap();
    ck.create_section(b"alpha", Time::END, b"hello world")
        .unwrap();
    ck.create_section(&[0, 1, 2], Time::END, &[0xde, 0xad])
        .unwrap();

    let list = ckpt(dir.path(), &["list"]);
    let t = text(&list);
    assert!(list.status.success(), "{t}");
    assert!(
        t.contains("safCkpt=tool") && t.contains("WR_ACTIVE_REPLICA|COLLOCATED"),
        "{t}"
    );
    assert!(t.contains("2/4") && t.contains("13 B / 256 B"), "{t}");
    assert!(
        // Set once by this process: term 2 (a checkpoint starts in term 1).
        t.contains(&format!("node 0 term 2 (pid {})", std::process::id())),
        "{t}"
    );

    assert!(
        t.contains("primary at frame") && !t.contains("(fenced)"),
        "{t}"
    );
    // A copy its daemon fenced (no quorum) says so.
    ck.segment().fence(true).unwrap();
    let t = text(&ckpt(dir.path(), &["list"]));
    assert!(t.contains("primary (fenced) at frame"), "{t}");
    let json = ckpt(dir.path(), &["list", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v["fenced"], true);
    ck.segment().fence(false).unwrap();

    let json = ckpt(dir.path(), &["list", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v["fenced"], false);
    assert_eq!(v["name"], "safCkpt=tool");
    assert_eq!(v["sections"], 2);
    assert_eq!(v["openers"][0]["pid"], std::process::id());
    assert_eq!(v["openers"][0]["mode"], "RWC");

    let sections = text(&ckpt(dir.path(), &["sections", "safCkpt=tool"]));
    assert!(
        sections.contains("alpha") && sections.contains("0x000102"),
        "{sections}"
    );

    let dump = ckpt(dir.path(), &["dump", "safCkpt=tool", "alpha"]);
    let t = text(&dump);
    assert!(t.contains("11 bytes, version 1"), "{t}");
    assert!(
        t.contains("68 65 6c 6c 6f") && t.contains("|hello world|"),
        "{t}"
    );
    let dump = ckpt(
        dir.path(),
        &["dump", "safCkpt=tool", "000102", "--id-hex", "--json"],
    );
    let v: serde_json::Value = serde_json::from_slice(&dump.stdout).unwrap();
    assert_eq!(v["data_hex"], "dead");

    let unlink = ckpt(dir.path(), &["unlink", "safCkpt=tool"]);
    assert!(unlink.status.success(), "{}", text(&unlink));
    // The name is gone for the CLI, while this opener keeps its checkpoint.
    assert!(text(&ckpt(dir.path(), &["list"])).contains("no checkpoints"));
    assert_eq!(ck.read_section(b"alpha").unwrap(), b"hello world");
}

#[test]
fn bad_names_missing_sections_and_corrupt_segments_get_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let missing = ckpt(dir.path(), &["sections", "nosuch"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        text(&missing).contains("ckpt: no checkpoint 'nosuch' in"),
        "{}",
        text(&missing)
    );

    let empty = ckpt(dir.path(), &["unlink", ""]);
    assert_eq!(empty.status.code(), Some(1));
    assert!(
        text(&empty).contains("invalid checkpoint name"),
        "{}",
        text(&empty)
    );

    std::fs::write(dir.path().join("broken.ckpt"), b"not a segment at all").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        dir.path().join("broken.ckpt"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    let list = text(&ckpt(dir.path(), &["list"]));
    assert!(
        list.contains("refused") && list.contains("corrupt"),
        "{list}"
    );
    let sections = ckpt(dir.path(), &["sections", "broken"]);
    assert_eq!(sections.status.code(), Some(1));
    assert!(
        text(&sections).contains("segment is corrupt"),
        "{}",
        text(&sections)
    );

    let service = Service::with_config(Config::with_dir(dir.path()));
    let flags = OpenFlags::READ | OpenFlags::WRITE | OpenFlags::CREATE;
    let ck = service
        .open("c", flags, Some(&CreationAttributes::new(2, 8)))
        .unwrap();
    ck.set_active_replica().unwrap();
    let dump = ckpt(dir.path(), &["dump", "c", "nope"]);
    assert_eq!(dump.status.code(), Some(1));
    assert!(
        text(&dump).contains("has no section 'nope'"),
        "{}",
        text(&dump)
    );
    let hex = ckpt(dir.path(), &["dump", "c", "zz", "--id-hex"]);
    assert!(text(&hex).contains("is not hex bytes"), "{}", text(&hex));
}

/// Issue 6, finding 8: the CLI's rough edges, as a new user meets them.
mod rough_edges {
    use super::*;
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;

    /// `ckpt bench --json | head -1`: the reader goes away after one line;
    /// the bench stops quietly (no panic, exit 0) and removes its directory.
    #[test]
    fn bench_into_a_closed_pipe_stops_quietly_and_cleans_up() {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("bench");
        let mut child = Command::new(env!("CARGO_BIN_EXE_ckpt"))
            .arg("--dir")
            .arg(&dir)
            .args(["bench", "--quick", "--json"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap(); // The reader is dropped here: the pipe closes.
        assert!(first.starts_with("{\"scenario\""), "{first}");
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{:?}: {stderr}", out.status);
        assert!(!stderr.contains("panicked"), "{stderr}");
        let left: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
        assert!(left.is_empty(), "the bench left {left:?}");
    }

    /// `ckpt bench --only GROUPS` runs those groups alone; a group it does
    /// not know is an error that lists the groups, before anything runs.
    #[test]
    fn bench_runs_only_the_groups_asked_for() {
        let dir = tempfile::tempdir().unwrap();
        let out = ckpt(
            dir.path(),
            &["bench", "--quick", "--json", "--only", "iterate"],
        );
        assert!(out.status.success(), "{}", text(&out));
        let lines: Vec<_> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .collect();
        assert!(!lines.is_empty());
        for l in &lines {
            assert!(l.starts_with("{\"scenario\":\"iterate "), "{l}");
        }
        let out = ckpt(dir.path(), &["bench", "--only", "iterate,nope"]);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        assert!(
            text(&out).contains("no scenario group \"nope\"; the groups: local, c,"),
            "{}",
            text(&out)
        );
    }

    /// $CKPT_DIR is honoured by demo and bench, as the help says.
    #[test]
    fn demo_honours_ckpt_dir() {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_ckpt"))
            .env("CKPT_DIR", dir.path())
            .args(["demo", "--kills", "1", "--kill-every-ms", "100"])
            .output()
            .unwrap();
        let t = text(&out);
        assert!(out.status.success(), "{t}");
        assert!(t.contains(&dir.path().display().to_string()), "{t}");
        assert!(t.contains("1 takeover,"), "one takeover, singular: {t}");
    }

    /// An absurd section size is refused with the limit and why, at once.
    #[test]
    fn demo_bounds_the_section_size() {
        let dir = tempfile::tempdir().unwrap();
        let out = ckpt(dir.path(), &["demo", "--section-bytes", "100000000000"]);
        let t = text(&out);
        assert!(!out.status.success());
        assert!(t.contains("not in 8..=67108864"), "{t}");
    }

    /// A bad name says what is wrong, and a long one is not echoed in full.
    #[test]
    fn invalid_names_say_why_briefly() {
        let dir = tempfile::tempdir().unwrap();
        let long = "n".repeat(5000);
        let t = text(&ckpt(dir.path(), &["sections", &long]));
        assert!(t.contains("5000 bytes long; the limit is 2048"), "{t}");
        assert!(
            t.len() < 400,
            "the name is echoed in full: {} bytes",
            t.len()
        );
        let t = text(&ckpt(dir.path(), &["unlink", ""]));
        assert!(t.contains("checkpoint name is empty"), "{t}");
    }

    /// A section `ckpt list` counts is one `sections` shows: an expired one
    /// (not yet swept) is in neither. Times are local time, not epoch seconds.
    #[test]
    fn list_and_sections_agree_on_expired_sections() {
        let dir = tempfile::tempdir().unwrap();
        let service = Service::with_config(Config::with_dir(dir.path()));
        let flags = OpenFlags::READ | OpenFlags::WRITE | OpenFlags::CREATE;
        let ck = service
            .open("agree", flags, Some(&CreationAttributes::new(4, 64)))
            .unwrap();
        ck.set_active_replica().unwrap();
        ck.create_section(b"kept", Time::END, b"abc").unwrap();
        let soon = Time(ckpt_shm::segment::now().0 + 50_000_000);
        ck.create_section(b"brief", soon, &[0; 60]).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(100));
        let list = text(&ckpt(dir.path(), &["list", "--json"]));
        assert!(list.contains("\"sections\":1,"), "{list}");
        assert!(list.contains("\"memory_used_bytes\":3,"), "{list}");
        let sections = text(&ckpt(dir.path(), &["sections", "agree"]));
        assert!(!sections.contains("brief"), "{sections}");
        assert!(!sections.contains("since epoch"), "{sections}");
        let year = sections.lines().nth(1).unwrap_or_default().to_string();
        assert!(year.contains(" 20"), "a readable date: {sections}");
    }

    /// The ids `sections` prints as 0x... are accepted by `dump` as printed.
    #[test]
    fn dump_takes_ids_as_sections_prints_them() {
        let dir = tempfile::tempdir().unwrap();
        let service = Service::with_config(Config::with_dir(dir.path()));
        let flags = OpenFlags::READ | OpenFlags::WRITE | OpenFlags::CREATE;
        let ck = service
            .open("ids", flags, Some(&CreationAttributes::new(4, 64)))
            .unwrap();
        ck.set_active_replica().unwrap();
        ck.create_section(&[0x01, 0xff], Time::END, b"binary id")
            .unwrap();
        let sections = text(&ckpt(dir.path(), &["sections", "ids"]));
        assert!(sections.contains("0x01ff"), "{sections}");
        let dump = ckpt(dir.path(), &["dump", "ids", "0x01ff"]);
        assert!(dump.status.success(), "{}", text(&dump));
        assert!(text(&dump).contains("binary id"));
    }

    /// A checkpoint whose name is not UTF-8 can be inspected and unlinked.
    #[test]
    fn non_utf8_names_can_be_inspected_and_unlinked() {
        use std::os::unix::ffi::OsStrExt;
        let dir = tempfile::tempdir().unwrap();
        let service = Service::with_config(Config::with_dir(dir.path()));
        let flags = OpenFlags::READ | OpenFlags::WRITE | OpenFlags::CREATE;
        let name = b"bin\xff\xfename";
        let ck = service
            .open(name, flags, Some(&CreationAttributes::new(4, 64)))
            .unwrap();
        drop(ck);
        let arg = std::ffi::OsStr::from_bytes(name);
        let run = |cmd: &str| {
            Command::new(env!("CARGO_BIN_EXE_ckpt"))
                .arg("--dir")
                .arg(dir.path())
                .arg(cmd)
                .arg(arg)
                .output()
                .unwrap()
        };
        let sections = run("sections");
        assert!(sections.status.success(), "{}", text(&sections));
        let unlink = run("unlink");
        assert!(unlink.status.success(), "{}", text(&unlink));
        assert!(service.open(name, OpenFlags::READ, None).is_err());
    }

    /// `ckpt list` says when it deletes a checkpoint whose retention ran out.
    #[test]
    fn list_says_what_it_removes() {
        let dir = tempfile::tempdir().unwrap();
        let service = Service::with_config(Config::with_dir(dir.path()));
        let flags = OpenFlags::READ | OpenFlags::WRITE | OpenFlags::CREATE;
        let attrs = CreationAttributes {
            retention_ns: 10_000_000,
            ..CreationAttributes::new(4, 64)
        };
        drop(service.open("brief", flags, Some(&attrs)).unwrap());
        std::thread::sleep(std::time::Duration::from_millis(50));
        let t = text(&ckpt(dir.path(), &["list"]));
        assert!(
            t.contains("removed 'brief': its retention duration ran out"),
            "{t}"
        );
        let t = text(&ckpt(dir.path(), &["list"]));
        assert!(t.contains("no checkpoints"), "{t}");
    }
}

/// `ckpt ship` on one directory and `ckpt follow` on another, as an operator
/// runs them on two hosts: the replica follows the primary's writes, a
/// follower killed and started again goes on from what its replica holds,
/// and both stop cleanly on SIGTERM.
#[test]
fn ship_and_follow_keep_a_replica_up_to_date_across_a_restart() {
    use std::io::{BufRead, BufReader};
    use std::process::{Child, Stdio};

    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let name = "safCkpt=cli_repl";
    let attrs = CreationAttributes {
        flags: ckpt::CreationFlags::new(ckpt::UpdateMode::ActiveReplica, true),
        ..CreationAttributes::new(4, 4096)
    };
    let rwc = OpenFlags::READ | OpenFlags::WRITE | OpenFlags::CREATE;
    let primary = Service::with_config(Config::with_dir(a.path()))
        .open(name, rwc, Some(&attrs))
        .unwrap();
    primary.set_active_replica().unwrap();
    primary
        .create_section(b"seq", Time::END, &0u64.to_le_bytes())
        .unwrap();

    let spawn = |dir: &std::path::Path, args: &[&str]| -> Child {
        Command::new(env!("CARGO_BIN_EXE_ckpt"))
            .arg("--dir")
            .arg(dir)
            .args(args)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    // The shipper prints the address it listens on.
    let mut shipper = spawn(a.path(), &["ship", name, "--listen", "127.0.0.1:0"]);
    let mut lines = BufReader::new(shipper.stderr.take().unwrap()).lines();
    let addr = loop {
        let line = lines.next().expect("the shipper's output").unwrap();
        if let Some(at) = line.strip_prefix(&format!("ckpt: shipping {name} on ")) {
            break at.to_string();
        }
    };
    let replica_seq = |want: u64| replica_holds(b.path(), name, want);
    let mut follower = spawn(b.path(), &["follow", name, "--from", &addr]);
    for n in 1..=500u64 {
        primary.overwrite(b"seq", &n.to_le_bytes()).unwrap();
    }
    replica_seq(500);
    // Killed, then started again: it goes on from what its replica holds.
    follower.kill().unwrap();
    follower.wait().unwrap();
    for n in 501..=800u64 {
        primary.overwrite(b"seq", &n.to_le_bytes()).unwrap();
    }
    let mut follower = spawn(b.path(), &["follow", name, "--from", &addr]);
    replica_seq(800);
    // `ckpt list` tells the replica from the primary, and how far each is.
    let last = primary.segment().last_seq();
    let listed = text(&ckpt(b.path(), &["list"]));
    assert!(
        listed.contains(&format!("replica at frame {last}")),
        "{listed}"
    );
    let listed = text(&ckpt(a.path(), &["list"]));
    assert!(
        listed.contains(&format!("primary at frame {last}")),
        "{listed}"
    );
    // SIGTERM: both stop and exit 0.
    for child in [&mut follower, &mut shipper] {
        // SAFETY: plain signal to a child we started.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let status = child.wait().unwrap();
        assert!(status.success(), "{status:?}");
    }
    let follower_err = {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut follower.stderr.take().unwrap(), &mut s).unwrap();
        s
    };
    assert!(
        follower_err.contains("following safCkpt=cli_repl"),
        "{follower_err}"
    );
    assert!(follower_err.contains("stopped"), "{follower_err}");
}

/// Two `ckpt daemon`s on loopback, one directory each, as an operator runs
/// them on two hosts: a checkpoint created on one is replicated to the
/// other; `ckpt peers` shows the links on both ends (text and JSON); the
/// metrics endpoint serves them; the replica's daemon killed and started
/// again catches up; `ckpt promote` fails over to the replica's host, whose
/// daemon makes the old primary its replica; SIGTERM stops both cleanly.
#[test]
fn two_daemons_replicate_and_ckpt_peers_shows_their_links() {
    use std::io::{Read, Write};
    use std::time::{Duration, Instant};

    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (pa, pb, metrics) = (port(), port(), port());
    let peer_a = format!("1:alpha={pa}");
    let peer_b = format!("2:beta={pb}");
    let mut da = daemon(
        a.path(),
        &[
            "--node",
            "1",
            "--name",
            "alpha",
            "--listen",
            &pa,
            "--peer",
            &peer_b,
            "--metrics",
            &metrics,
        ],
    );
    let b_args = [
        "--node", "2", "--name", "beta", "--listen", &pb, "--peer", &peer_a,
    ];
    let mut db = daemon(b.path(), &b_args);

    let name = "safCkpt=cli_daemons";
    let attrs = CreationAttributes {
        flags: ckpt::CreationFlags::new(ckpt::UpdateMode::ActiveReplica, true),
        ..CreationAttributes::new(4, 4096)
    };
    let rwc = OpenFlags::READ | OpenFlags::WRITE | OpenFlags::CREATE;
    let primary = Service::with_config(Config {
        node_id: 1,
        ..Config::with_dir(a.path())
    })
    .open(name, rwc, Some(&attrs))
    .unwrap();
    primary.set_active_replica().unwrap();
    primary
        .create_section(b"seq", Time::END, &0u64.to_le_bytes())
        .unwrap();
    let replica_seq = |want: u64| replica_holds(b.path(), name, want);
    // The checkpoint is collocated: node 2 parks the link node 1 offers, and
    // holds no replica until a process there opens it.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = ckpt(b.path(), &["peers", "--json"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        if v["links"][0]["state"] == "parked" {
            break;
        }
        assert!(Instant::now() < deadline, "{}", text(&out));
        std::thread::sleep(Duration::from_millis(10));
    }
    // A client of node 2's control socket that connects and says nothing
    // holds only its own thread: `ckpt peers` is answered meanwhile.
    let _idle = std::os::unix::net::UnixStream::connect(b.path().join(".ckptd.sock")).unwrap();
    let asked = Instant::now();
    assert!(text(&ckpt(b.path(), &["peers"])).contains("parked"));
    assert!(
        asked.elapsed() < Duration::from_secs(1),
        "`ckpt peers` waited {:?} behind an idle client",
        asked.elapsed()
    );
    for n in 1..=300u64 {
        primary.overwrite(b"seq", &n.to_le_bytes()).unwrap();
    }
    std::thread::sleep(Duration::from_millis(300));
    assert!(!text(&ckpt(b.path(), &["list"])).contains(name));
    // A standby there opens it (as `replica_seq` does): the library asks
    // node 2's daemon on its control socket, and the replica comes.
    replica_seq(300);
    // `ckpt peers`: the shipping end, once the acknowledgement is in.
    let last = primary.segment().last_seq();
    let deadline = Instant::now() + Duration::from_secs(10);
    let json = loop {
        let out = ckpt(a.path(), &["peers", "--json"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        if v["links"][0]["held"] == last {
            break v;
        }
        assert!(Instant::now() < deadline, "{}", text(&out));
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(json["node"], 1);
    assert_eq!(json["peers"][0]["name"], "beta");
    let link = &json["links"][0];
    assert_eq!(
        (
            &link["checkpoint"],
            &link["role"],
            &link["state"],
            &link["lag"]
        ),
        (
            &name.into(),
            &"shipping".into(),
            &"linked".into(),
            &0.into()
        )
    );
    let shown = text(&ckpt(b.path(), &["peers"]));
    assert!(shown.contains("node 2 (beta)"), "{shown}");
    assert!(
        shown.contains(name) && shown.contains("following"),
        "{shown}"
    );
    // Metrics.
    let mut conn = std::net::TcpStream::connect(&metrics).unwrap();
    conn.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
    let mut page = String::new();
    conn.read_to_string(&mut page).unwrap();
    assert!(page.starts_with("HTTP/1.1 200 OK"), "{page}");
    let up = format!("ckpt_link_up{{checkpoint=\"{name}\",role=\"shipping\",peer=\"2\"}} 1");
    assert!(page.contains(&up), "{page}");
    // The replica's daemon killed, writes go on, then it starts again.
    db.0.kill().unwrap();
    db.0.wait().unwrap();
    for n in 301..=600u64 {
        primary.overwrite(b"seq", &n.to_le_bytes()).unwrap();
    }
    let mut db = daemon(b.path(), &b_args);
    replica_seq(600);
    // An operator fails over to node 2: `ckpt promote` there; node 1's copy
    // becomes a replica of it, and node 1's application can write no more.
    let refused = ckpt(a.path(), &["promote", name]);
    assert!(!refused.status.success());
    assert!(
        text(&refused).contains("a primary here already"),
        "{}",
        text(&refused)
    );
    let promoted = ckpt(b.path(), &["promote", name, "--node", "2"]);
    assert!(promoted.status.success(), "{}", text(&promoted));
    // Term 1 at creation, 2 once node 1 became the active replica.
    assert!(text(&promoted).contains("term 3"), "{}", text(&promoted));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !text(&ckpt(a.path(), &["list"])).contains("replica at frame") {
        assert!(
            Instant::now() < deadline,
            "node 1's copy is still a primary"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(primary.overwrite(b"seq", &601u64.to_le_bytes()).is_err());
    // `--replica` drops only a replica, never a primary.
    let refused = ckpt(b.path(), &["unlink", name, "--replica"]);
    assert!(
        text(&refused).contains("a primary here"),
        "{}",
        text(&refused)
    );
    // `ckpt unlink` on node 1, which holds a replica, unlinks it
    // everywhere: node 1's daemon has the primary's node (2) unlink it,
    // and node 1's replica applies that unlink before the command returns.
    let done = ckpt(a.path(), &["unlink", name]);
    assert!(done.status.success(), "{}", text(&done));
    assert!(!text(&ckpt(a.path(), &["list"])).contains(name));
    assert!(!text(&ckpt(b.path(), &["list"])).contains(name));
    let again = ckpt(a.path(), &["unlink", name]);
    assert!(!again.status.success());
    // SIGTERM: both stop, exit 0, and remove their control sockets.
    for Daemon(child) in [&mut da, &mut db] {
        // SAFETY: plain signal to a child we started.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let status = child.wait().unwrap();
        assert!(status.success(), "{status:?}");
    }
    let mut log = String::new();
    da.0.stderr
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    assert!(log.contains("node stopped"), "{log}");
    assert!(!a.path().join(".ckptd.sock").exists());
    let out = ckpt(a.path(), &["peers"]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("is `ckpt daemon` running"),
        "{}",
        text(&out)
    );
}

/// `ckpt unlink` (`saCkptCheckpointUnlink`) on a node that holds a replica
/// whose primary is out of reach says `TRY_AGAIN`, not that no checkpoint
/// of that name exists (an application told `NOT_EXIST` may create a second
/// one), also once the daemon has forgotten the primary's offer.
#[test]
fn unlinking_a_replica_whose_primary_is_out_of_reach_says_try_again() {
    use std::time::{Duration, Instant};
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (da, db) = two_daemons(a.path(), b.path());
    let name = "safCkpt=unlink_cut";
    let attrs = CreationAttributes {
        flags: CreationFlags::new(UpdateMode::ActiveReplica, true),
        ..CreationAttributes::new(4, 64)
    };
    let rwc = OpenFlags::READ | OpenFlags::WRITE | OpenFlags::CREATE;
    let primary = service(b.path(), 2).open(name, rwc, Some(&attrs)).unwrap();
    primary.set_active_replica().unwrap();
    primary.create_section(b"k", Time::END, b"v").unwrap();
    let standby = service(a.path(), 1)
        .open(name, OpenFlags::READ, None)
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while standby.read_section(b"k").ok().as_deref() != Some(&b"v"[..]) {
        assert!(Instant::now() < deadline, "no replica on node 1");
        std::thread::sleep(Duration::from_millis(10));
    }
    // The primary's daemon goes; node 1's forgets its offer (retry_max +
    // scan + 1 s).
    drop(db);
    std::thread::sleep(Duration::from_millis(3500));
    let out = ckpt(a.path(), &["unlink", name]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("SA_AIS_ERR_TRY_AGAIN"),
        "{}",
        text(&out)
    );
    assert!(text(&ckpt(a.path(), &["list"])).contains(name));
    drop((standby, primary, da));
}

#[test]
fn a_daemon_with_a_bad_configuration_says_why_and_exits_1() {
    let d = tempfile::tempdir().unwrap();
    let file = d.path().join("ckptd.toml");
    std::fs::write(&file, "node = 1\nlisten = \"127.0.0.1:0\"\npeers = []\n").unwrap();
    let conf = file.to_str().unwrap();
    for (args, why) in [
        (vec!["daemon", "--config", conf], "unknown field `peers`"),
        (vec!["daemon", "--listen", "127.0.0.1:0"], "no node id"),
        (
            vec!["daemon", "--node", "1", "--peer", "1=127.0.0.1:9"],
            "this node's id",
        ),
        (
            vec!["daemon", "--node", "1", "--transport", "carrier-pigeon"],
            "expected auto",
        ),
    ] {
        let out = ckpt(d.path(), &args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", text(&out));
        assert!(text(&out).contains(why), "{args:?}: {}", text(&out));
    }
}

#[test]
fn changes_made_where_only_a_replica_is_go_to_the_primary() {
    use ckpt::{
        ExpirationSetError, SectionCreateError, SectionDeleteError, UpdateMode, WriteError,
        WriteVec,
    };
    use std::time::{Duration, Instant};

    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (da, _db) = two_daemons(a.path(), b.path());
    let rw = OpenFlags::READ | OpenFlags::WRITE;
    for (name, mode, collocated) in [
        ("safCkpt=fwd_async", UpdateMode::ActiveReplica, true),
        ("safCkpt=fwd_sync", UpdateMode::AllReplicas, false),
    ] {
        let attrs = CreationAttributes {
            flags: ckpt::CreationFlags::new(mode, collocated),
            section_id_bytes_max: 8,
            ..CreationAttributes::new(8, 64)
        };
        let primary = service(a.path(), 1)
            .open(name, rw | OpenFlags::CREATE, Some(&attrs))
            .unwrap();
        if collocated {
            primary.set_active_replica().unwrap();
        }
        primary.create_section(b"a", Time::END, b"from 1").unwrap();
        // Opened on node 2 at once (the want waits for node 1's first
        // offer), for writing: its copy is a replica.
        let there = service(b.path(), 2).open(name, rw, None).unwrap();
        assert!(there.segment().is_replica());
        // Each change is made by node 1 and is in node 2's replica when the
        // call returns.
        let t = Instant::now();
        there.overwrite(b"a", b"from 2").unwrap();
        let took = t.elapsed();
        assert_eq!(there.read_section(b"a").unwrap(), b"from 2");
        assert_eq!(primary.read_section(b"a").unwrap(), b"from 2");
        println!("{name}: an overwrite from node 2 took {took:?}");
        there.create_section(b"b", Time::END, b"new").unwrap();
        let (id, section) = there.create_section_generated(Time::END, b"gen").unwrap();
        assert_eq!(section.version().unwrap(), 1);
        assert_eq!(primary.read_section(id.as_bytes()).unwrap(), b"gen");
        // Through the section's handle too.
        section.overwrite(b"g2").unwrap();
        section.write_at(2, b"!").unwrap();
        assert_eq!(primary.read_section(id.as_bytes()).unwrap(), b"g2!");
        section
            .overwrite_with(3, |b| b.copy_from_slice(b"abc"))
            .unwrap();
        assert_eq!(there.read_section(id.as_bytes()).unwrap(), b"abc");
        assert_eq!(section.version().unwrap(), 4);
        // A write past the end grows the section over zeros, there as here.
        section.write_at(5, b"x").unwrap();
        assert_eq!(primary.read_section(id.as_bytes()).unwrap(), b"abc\0\0x");
        there
            .write(&[
                WriteVec {
                    id: b"a",
                    offset: 5,
                    data: b"2!",
                },
                WriteVec {
                    id: b"b",
                    offset: 3,
                    data: b"er",
                },
            ])
            .unwrap();
        assert_eq!(there.read_section(b"a").unwrap(), b"from 2!");
        assert_eq!(primary.read_section(b"b").unwrap(), b"newer");
        there.set_expiration(b"b", Time(1)).unwrap();
        assert!(primary.read_section(b"b").is_err(), "expired at once");
        // The replica counts what a reader sees (it sweeps nothing itself).
        let (mine, theirs) = (there.status().unwrap(), primary.status().unwrap());
        assert_eq!(
            (mine.sections, mine.memory_used_bytes),
            (theirs.sections, theirs.memory_used_bytes)
        );
        // A section created already expired: made, and gone at once.
        there.create_section(b"c", Time(1), b"x").unwrap();
        assert!(there.read_section(b"c").is_err());
        // A synchronize from node 2: the primary waits for its replicas.
        let sync = there.synchronize(Time::from_secs(5));
        match mode {
            UpdateMode::AllReplicas => {
                assert_eq!(sync, Err(ckpt::SynchronizeError::Synchronous))
            }
            _ => sync.unwrap(),
        }
        there.set_retention(Time::from_secs(7)).unwrap();
        let retention = primary.status().unwrap().attributes.retention_ns;
        assert_eq!(retention, 7_000_000_000);
        there.delete_section(id.as_bytes()).unwrap();
        assert!(primary.read_section(id.as_bytes()).is_err());
        assert!(there.read_section(id.as_bytes()).is_err());
        // The primary's errors, with the failing element: nothing of a
        // failed vector write is made.
        let bad = there.write(&[
            WriteVec {
                id: b"a",
                offset: 0,
                data: b"X",
            },
            WriteVec {
                id: b"none",
                offset: 0,
                data: b"x",
            },
        ]);
        assert_eq!(bad, Err((1, WriteError::NotExist)));
        assert_eq!(primary.read_section(b"a").unwrap(), b"from 2!");
        assert_eq!(there.overwrite(b"a", &[0; 65]), Err(WriteError::TooLarge));
        assert_eq!(
            there.create_section(b"a", Time::END, b"x").err(),
            Some(SectionCreateError::Exist)
        );
        assert_eq!(
            there.delete_section(b"none"),
            Err(SectionDeleteError::NotExist)
        );
        assert_eq!(
            there.set_expiration(b"none", Time::END),
            Err(ExpirationSetError::NotExist)
        );
        // Checked here, before anything is sent.
        assert_eq!(
            there.overwrite(b"longer than 8", b"x"),
            Err(WriteError::IdTooLong)
        );
        let reader = service(b.path(), 2)
            .open(name, OpenFlags::READ, None)
            .unwrap();
        assert_eq!(reader.overwrite(b"a", b"x"), Err(WriteError::Access));
    }
    // A handle on a checkpoint that was unlinked and made again under its
    // name never writes the new one: the primary refuses a change for
    // another incarnation.
    let name = "safCkpt=fwd_async";
    let old_handle = service(b.path(), 2).open(name, rw, None).unwrap();
    assert!(ckpt(a.path(), &["unlink", name]).status.success());
    // Unlinked: its replica here takes no more changes (NOT_EXIST, not
    // TRY_AGAIN for ever).
    let deadline = Instant::now() + Duration::from_secs(10);
    while !old_handle.segment().is_unlinked() {
        assert!(Instant::now() < deadline, "node 2 never applied the unlink");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(
        old_handle.overwrite(b"a", b"after the unlink"),
        Err(WriteError::NoActiveReplica)
    );
    let attrs = CreationAttributes {
        flags: ckpt::CreationFlags::new(UpdateMode::ActiveReplica, true),
        ..CreationAttributes::new(8, 64)
    };
    let again = service(a.path(), 1)
        .open(name, rw | OpenFlags::CREATE, Some(&attrs))
        .unwrap();
    again.set_active_replica().unwrap();
    again.create_section(b"a", Time::END, b"new one").unwrap();
    let refused = old_handle.overwrite(b"a", b"stale writer");
    assert!(refused.is_err(), "{refused:?}");
    assert_eq!(again.read_section(b"a").unwrap(), b"new one");
    drop(old_handle);
    // The new one, opened on node 2, is written from there.
    let there = service(b.path(), 2).open(name, rw, None).unwrap();
    there.overwrite(b"a", b"new from 2").unwrap();
    assert_eq!(again.read_section(b"a").unwrap(), b"new from 2");
    // With node 1's daemon gone, there is no primary to ask: TRY_AGAIN or,
    // once the request went, TIMEOUT; never a crash or a silent loss.
    drop(da);
    let t = Instant::now();
    let e = there.overwrite(b"a", b"lost?").unwrap_err();
    assert!(
        matches!(e, WriteError::TryAgain | WriteError::Timeout),
        "{e:?}"
    );
    assert!(t.elapsed() < Duration::from_secs(15), "{:?}", t.elapsed());
    assert_eq!(there.read_section(b"a").unwrap(), b"new from 2");
    drop(again);
}

/// Checkpoint `name` (csa103's: collocated, asynchronous) created with
/// `CREATE` by a process of node 1 in `a` and one of node 2 in `b`, each
/// on its own host: two incarnations, neither written.
fn created_on_both(
    a: &std::path::Path,
    b: &std::path::Path,
    name: &str,
) -> (ckpt::Checkpoint, ckpt::Checkpoint) {
    let attrs = CreationAttributes {
        flags: ckpt::CreationFlags::new(ckpt::UpdateMode::ActiveReplica, true),
        ..CreationAttributes::new(2, 64)
    };
    let rwc = OpenFlags::READ | OpenFlags::WRITE | OpenFlags::CREATE;
    let one = service(a, 1).open(name, rwc, Some(&attrs)).unwrap();
    let two = service(b, 2).open(name, rwc, Some(&attrs)).unwrap();
    (one, two)
}

#[test]
fn csa103_processes_that_create_the_checkpoint_on_two_nodes_at_once_share_one() {
    use std::time::{Duration, Instant};

    // The tutorial's processes both open with CREATE as they start; here
    // each creates its own before the daemons know of each other (they
    // start after), the active's written.
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (active, standby) = created_on_both(a.path(), b.path(), "safCkpt=csa103Ckpt");
    active.set_active_replica().unwrap();
    active
        .create_section(b"seq", Time::END, &1u64.to_le_bytes())
        .unwrap();
    let daemons = two_daemons(a.path(), b.path());
    // One checkpoint: the standby's copy yields to the active's, and the
    // standby's handle reads what the active writes.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut n = 1u64;
    loop {
        n += 1;
        active.overwrite(b"seq", &n.to_le_bytes()).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        let seen = standby.read_section(b"seq").ok();
        if seen.as_deref() == Some(&n.to_le_bytes()[..]) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the standby's handle reads {seen:?}, the active wrote {n}"
        );
    }
    assert_eq!(
        standby.segment().incarnation(),
        active.segment().incarnation()
    );
    // The active's node goes: the standby takes over and continues.
    drop(active);
    drop(daemons);
    standby.set_active_replica().unwrap();
    let got = standby.read_section(b"seq").unwrap();
    assert_eq!(got, n.to_le_bytes());
    standby.overwrite(b"seq", &(n + 1).to_le_bytes()).unwrap();
}

#[test]
fn an_active_whose_unwritten_copy_yielded_sets_itself_active_and_its_standby_follows() {
    use std::time::{Duration, Instant};

    // Both nodes' processes created the checkpoint before the daemons met,
    // and neither has written: one copy yields (the lower incarnation
    // stays), and the process on that node becomes the active.
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (one, two) = created_on_both(a.path(), b.path(), "safCkpt=csa103Unwritten");
    let _daemons = two_daemons(a.path(), b.path());
    let deadline = Instant::now() + Duration::from_secs(10);
    while one.segment().incarnation() != two.segment().incarnation() {
        assert!(Instant::now() < deadline, "the two copies stay apart");
        std::thread::sleep(Duration::from_millis(10));
    }
    let (active, standby) = if one.segment().is_replica() {
        (&one, &two)
    } else {
        (&two, &one)
    };
    // The yielded node's process sets itself active (TRY_AGAIN while its
    // replica catches up, as an application retries), then writes.
    loop {
        match active.set_active_replica() {
            Ok(()) => break,
            Err(ckpt::ActiveReplicaSetError::TryAgain) => {
                assert!(Instant::now() < deadline, "never became the active");
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("{e:?}"),
        }
    }
    active.create_section(b"seq", Time::END, b"1").unwrap();
    while standby.read_section(b"seq").ok().as_deref() != Some(&b"1"[..]) {
        assert!(
            Instant::now() < deadline,
            "the standby does not see the active's write"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}
