//! Segments on hugetlbfs: sizes round up to the huge page and everything works.
//!
//! The test changes nothing on the machine it runs on unless asked to. The
//! hugetlbfs mount lives only in a private mount namespace of a child process
//! (`unshare --mount`: this test binary re-executed as `hugetlb_child`). Huge
//! pages: if the machine has enough free ones, the test uses them; otherwise
//! it reserves more only with `CKPT_TEST_HUGETLB=1` (`.ci/run` sets it), and
//! then restores `vm.nr_hugepages` to exactly the value it read, and checks
//! that it did. Without root, or without that opt-in, it skips with a message.

mod mounts;

use std::path::Path;

use ckpt::{Config, CreationAttributes, OpenFlags, Service, Time};

/// Huge pages the test needs (the segment takes one or two).
const PAGES: u64 = 4;
const ENV_OPT_IN: &str = "CKPT_TEST_HUGETLB";
const ENV_CHILD_DIR: &str = "CKPT_HUGETLB_DIR";
const NR_HUGEPAGES: &str = "/proc/sys/vm/nr_hugepages";

/// Huge pages reserved for the test: `restore` holds `vm.nr_hugepages` as it
/// was, if the test raised it.
struct Reservation {
    restore: Option<u64>,
}

impl Reservation {
    /// Restores the setting; an error if it does not read back as it was.
    fn release(mut self) -> Result<(), String> {
        match self.restore.take() {
            None => Ok(()),
            Some(before) => restore(before),
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        // Only if the test failed before `release`.
        if let Some(before) = self.restore.take() {
            if let Err(e) = restore(before) {
                eprintln!("{e}");
            }
        }
    }
}

fn restore(before: u64) -> Result<(), String> {
    std::fs::write(NR_HUGEPAGES, before.to_string())
        .map_err(|e| format!("cannot restore {NR_HUGEPAGES} to {before}: {e}"))?;
    match read_u64(NR_HUGEPAGES) {
        Ok(now) if now == before => Ok(()),
        other => Err(format!(
            "{NR_HUGEPAGES} reads {other:?} after restoring {before}"
        )),
    }
}

fn read_u64(path: &str) -> Result<u64, String> {
    std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {path}: {e}"))?
        .trim()
        .parse()
        .map_err(|e| format!("unreadable {path}: {e}"))
}

/// Free huge pages, from /proc/meminfo.
fn free_huge_pages() -> u64 {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    meminfo
        .lines()
        .find_map(|l| l.strip_prefix("HugePages_Free:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

fn reserve() -> Result<Reservation, String> {
    let free = free_huge_pages();
    if free >= PAGES {
        return Ok(Reservation { restore: None });
    }
    if std::env::var(ENV_OPT_IN).as_deref() != Ok("1") {
        return Err(format!(
            "the machine has {free} free huge pages and the test needs {PAGES}; set \
             {ENV_OPT_IN}=1 to let it raise {NR_HUGEPAGES} for its run (it restores it)"
        ));
    }
    let before = read_u64(NR_HUGEPAGES)?;
    std::fs::write(NR_HUGEPAGES, (before + PAGES).to_string())
        .map_err(|e| format!("cannot reserve huge pages (needs root): {e}"))?;
    let reservation = Reservation {
        restore: Some(before),
    };
    if free_huge_pages() < PAGES {
        return Err("the kernel could not reserve the huge pages".into());
    }
    Ok(reservation)
}

/// The child's side: in its own mount namespace, with hugetlbfs at
/// `ENV_CHILD_DIR`.
#[test]
fn hugetlb_child() {
    let Ok(dir) = std::env::var(ENV_CHILD_DIR) else {
        return; // Only meaningful when the test below starts it.
    };
    let dir = Path::new(&dir);
    let service = Service::with_config(Config::with_dir(dir));
    let flags = OpenFlags::READ | OpenFlags::WRITE | OpenFlags::CREATE;
    let ck = service
        .open("huge", flags, Some(&CreationAttributes::new(4, 4096)))
        .expect("create on hugetlbfs");
    ck.set_active_replica().unwrap();
    let s = ck
        .create_section(b"a", Time::END, b"on huge pages")
        .unwrap();
    s.overwrite(&[7u8; 4096]).unwrap();
    assert_eq!(ck.read_section(b"a").unwrap(), vec![7u8; 4096]);
    let size = std::fs::metadata(dir.join("huge.ckpt")).unwrap().len();
    assert_eq!(
        size % (2 << 20),
        0,
        "segment size {size} is not a multiple of the huge page"
    );
    let again = service
        .open("huge", OpenFlags::READ, None)
        .expect("reopen on hugetlbfs");
    assert_eq!(again.read_section(b"a").unwrap(), vec![7u8; 4096]);
    drop(again);
    drop(ck);
    println!("hugetlb: ok");
}

#[test]
fn checkpoints_work_in_a_hugetlbfs_directory() {
    if !mounts::private_mounts_available() {
        eprintln!("SKIPPED checkpoints_work_in_a_hugetlbfs_directory: no private mount namespace (needs root)");
        return;
    }
    let reservation = match reserve() {
        Ok(r) => r,
        Err(why) => {
            eprintln!("SKIPPED checkpoints_work_in_a_hugetlbfs_directory: {why}");
            return;
        }
    };
    let scratch = tempfile::tempdir().unwrap();
    let mnt = scratch.path().join("huge");
    std::fs::create_dir(&mnt).unwrap();
    let out = mounts::run_with_mount(
        "hugetlbfs",
        "mode=0700",
        &mnt,
        "hugetlb_child",
        ENV_CHILD_DIR,
    );
    let released = reservation.release();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("mount:") && !out.status.success() {
        eprintln!("SKIPPED checkpoints_work_in_a_hugetlbfs_directory: {stderr}");
        return;
    }
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("hugetlb: ok"), "{stdout}\n{stderr}");
    released.unwrap();
    assert!(
        !std::fs::read_to_string("/proc/mounts")
            .unwrap()
            .contains(&*mnt.to_string_lossy()),
        "the mount leaked out of its namespace"
    );
}
