//! Segments on hugetlbfs: sizes round up to the huge page and everything works.
//!
//! Needs root (to reserve huge pages and mount hugetlbfs); skips with a message
//! otherwise. Restores the reservation and unmounts on the way out.

use std::process::Command;

use ckpt::{Config, CreationAttributes, OpenFlags, Service, Time};

const PAGES: u64 = 16;

struct Mounted {
    dir: tempfile::TempDir,
    pages_before: u64,
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
        let _ = std::fs::write("/proc/sys/vm/nr_hugepages", self.pages_before.to_string());
    }
}

fn mount() -> Result<Mounted, String> {
    let pages_before: u64 = std::fs::read_to_string("/proc/sys/vm/nr_hugepages")
        .map_err(|e| format!("no /proc/sys/vm/nr_hugepages: {e}"))?
        .trim()
        .parse()
        .map_err(|e| format!("unreadable nr_hugepages: {e}"))?;
    std::fs::write(
        "/proc/sys/vm/nr_hugepages",
        (pages_before + PAGES).to_string(),
    )
    .map_err(|e| format!("cannot reserve huge pages (needs root): {e}"))?;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let mounted = Mounted { dir, pages_before };
    let ok = Command::new("mount")
        .args(["-t", "hugetlbfs", "none"])
        .arg(mounted.dir.path())
        .status()
        .map_err(|e| format!("cannot run mount: {e}"))?
        .success();
    if !ok {
        return Err("mount -t hugetlbfs failed (needs root and CONFIG_HUGETLBFS)".into());
    }
    Ok(mounted)
}

#[test]
fn checkpoints_work_in_a_hugetlbfs_directory() {
    let mounted = match mount() {
        Ok(m) => m,
        Err(why) => {
            eprintln!("SKIPPED checkpoints_work_in_a_hugetlbfs_directory: {why}");
            return;
        }
    };
    let service = Service::with_config(Config::with_dir(mounted.dir.path()));
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
    let file = mounted.dir.path().join("huge.ckpt");
    let size = std::fs::metadata(&file).unwrap().len();
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
}
