//! The `ckpt` command as an operator and a new user meet it.

use std::process::{Command, Output};

use ckpt::{Config, CreationAttributes, OpenFlags, Service, Time};

fn ckpt(dir: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ckpt"))
        .arg("--dir")
        .arg(dir)
        .args(args)
        .output()
        .unwrap()
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

    let json = ckpt(dir.path(), &["list", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
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
