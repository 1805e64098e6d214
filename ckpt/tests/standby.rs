//! Hot standby across processes: a standby process sleeping on the futex sees
//! every change of the active, in order, with the data readable at once.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use ckpt::{Config, CreationAttributes, Mutation, OpenFlags, Service, Time};

const ENV_DIR: &str = "CKPT_STANDBY_CHILD_DIR";
const CHANGES: u64 = 300;

/// The standby process: follows the checkpoint, checks each change, reports.
#[test]
fn standby_child() {
    let Ok(dir) = std::env::var(ENV_DIR) else {
        return; // Only meaningful when the parent test starts it.
    };
    let service = Service::with_config(Config::with_dir(&dir));
    let ck = service
        .open("hot", OpenFlags::READ, None)
        .expect("standby opens");
    let mut watcher = ck.watch();
    println!("ready");
    std::io::stdout().flush().unwrap();
    let mut expected = 1u64;
    let mut sleeps = 0u64;
    while expected <= CHANGES {
        if !watcher.wait(Duration::from_secs(10), Duration::ZERO) {
            panic!("no change within 10 s (expected seq {expected})");
        }
        sleeps += 1;
        while let Some(change) = watcher.next_change().expect("no lag at this rate") {
            let Mutation::Overwrite { id, data } = change.mutation else {
                panic!("unexpected change {:?}", change.mutation);
            };
            assert_eq!(id, b"seq");
            let seq = u64::from_be_bytes(data.try_into().unwrap());
            assert_eq!(seq, expected, "changes out of order");
            // The data is readable at once, at this version or a later one.
            let now = u64::from_be_bytes(ck.read_section(b"seq").unwrap().try_into().unwrap());
            assert!(now >= seq, "section behind its own change: {now} < {seq}");
            expected += 1;
        }
    }
    println!("saw {CHANGES} changes in order after {sleeps} wake-ups");
}

#[test]
fn a_standby_process_sees_every_change_in_order_with_its_data() {
    let dir = tempfile::tempdir().unwrap();
    let service = Service::with_config(Config::with_dir(dir.path()));
    let flags = OpenFlags::READ | OpenFlags::WRITE | OpenFlags::CREATE;
    let mut attrs = CreationAttributes::new(2, 8);
    attrs.flags = ckpt::CreationFlags::new(ckpt::UpdateMode::ActiveReplica, false);
    let active = service.open("hot", flags, Some(&attrs)).unwrap();
    let section = active
        .create_section(b"seq", Time::END, &0u64.to_be_bytes())
        .unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "standby_child",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ENV_DIR, dir.path())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert!(lines.any(|l| l.is_ok_and(|l| l.trim_end().ends_with("ready"))));
    for seq in 1..=CHANGES {
        section.overwrite(&seq.to_be_bytes()).unwrap();
        // Every few writes, pause so the standby goes back to sleep and the
        // next write has to wake it through the futex.
        if seq % 7 == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    let report: Vec<String> = lines.map_while(Result::ok).collect();
    let status = child.wait().unwrap();
    assert!(status.success(), "standby failed: {report:?}");
    assert!(
        report
            .iter()
            .any(|l| l.contains(&format!("saw {CHANGES} changes in order"))),
        "standby did not confirm: {report:?}"
    );
}
