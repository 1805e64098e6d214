//! What ckpt does with files in the segment directory that are not healthy
//! segments: it refuses them with an error, never panics, never hangs, and
//! `unlink` frees a name taken by a damaged file.
//!
//! A checkpoint named `N` is the file `<encoded N>.ckpt` in the directory
//! (`ckpt_shm::dir::file_name`). The segment header starts with the magic
//! `CKPTSEG\0` (offset 0) and the layout version (offset 8, u32 little endian),
//! then the segment size (offset 16, u64).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use ckpt::{
    AisError, CheckpointName, Config, CreationAttributes, OpenError, OpenFlags, SectionsChosen,
    Service, Time, UnlinkError, WriteVec,
};

const NAME: &str = "safCkpt=bad_input";

fn service() -> (tempfile::TempDir, Service) {
    let dir = tempfile::tempdir().unwrap();
    let service = Service::with_config(Config::with_dir(dir.path()));
    (dir, service)
}

fn rw() -> OpenFlags {
    OpenFlags::READ | OpenFlags::WRITE
}

fn rwc() -> OpenFlags {
    OpenFlags::READ | OpenFlags::WRITE | OpenFlags::CREATE
}

fn attrs() -> CreationAttributes {
    CreationAttributes::new(4, 16)
}

/// The file of checkpoint `NAME` in `dir`.
fn path_in(dir: &Path) -> PathBuf {
    dir.join(ckpt_shm::dir::file_name(
        &CheckpointName::new(NAME).unwrap(),
    ))
}

fn err<T, E>(r: Result<T, E>) -> E {
    match r {
        Ok(_) => panic!("expected an error, got success"),
        Err(e) => e,
    }
}

/// Writes `bytes` as a fresh file (new inode) with `mode`.
fn put(path: &Path, bytes: &[u8], mode: u32) {
    let _ = fs::remove_file(path);
    fs::write(path, bytes).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// The bytes of a valid, closed segment for `NAME` holding one section.
fn valid_segment_bytes() -> Vec<u8> {
    let (dir, s) = service();
    {
        let c = s.open(NAME, rwc(), Some(&attrs())).unwrap();
        c.set_active_replica().unwrap();
        c.create_section(b"k", Time::END, b"value").unwrap();
    } // closed; the 60 s retention keeps the file
    fs::read(path_in(dir.path())).unwrap()
}

/// Opens the checkpoint and, if that works, exercises every read path and a
/// few writes. Returns the open result. Must not panic whatever the file holds.
fn probe(s: &Service) -> Result<(), OpenError> {
    let c = s.open(NAME, rw(), None)?;
    let _ = c.set_active_replica();
    let _ = c.status();
    if let Ok(it) = c.sections(SectionsChosen::Any) {
        for d in it.take(64) {
            let _ = c.read_section(d.id.as_bytes());
        }
    }
    let _ = c.read_section(b"k");
    let _ = c.overwrite(b"k", b"new");
    let _ = c.write(&[WriteVec {
        id: b"k",
        offset: 0,
        data: b"x",
    }]);
    let _ = c.create_section(b"n", Time::END, b"n");
    let _ = c.delete_section(b"n");
    let mut w = c.watch();
    for _ in 0..16 {
        if !matches!(w.next_change(), Ok(Some(_))) {
            break;
        }
    }
    Ok(())
}

#[test]
fn a_garbage_file_under_the_checkpoints_name_is_corrupt_library() {
    let (dir, s) = service();
    let path = path_in(dir.path());
    let mut random = vec![0u8; 16384];
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    for b in random.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    let mut magic_only = vec![0u8; 16384];
    magic_only[..8].copy_from_slice(b"CKPTSEG\0");
    let cases: [(&str, Vec<u8>); 6] = [
        ("empty", Vec::new()),
        ("short text", b"not a checkpoint".to_vec()),
        ("zeros", vec![0; 16384]),
        ("random", random),
        ("magic, unpublished (version 0)", magic_only.clone()),
        ("magic, current version, nothing else", {
            let mut v = magic_only;
            v[8..12].copy_from_slice(&ckpt_shm::layout::LAYOUT_VERSION.to_le_bytes());
            v
        }),
    ];
    for (what, bytes) in cases {
        put(&path, &bytes, 0o600);
        let e = err(s.open(NAME, rw(), None));
        assert_eq!(e, OpenError::Corrupt, "{what}");
        assert_eq!(e.ais(), AisError::Library);
        // CREATE does not overwrite a file it cannot read.
        assert_eq!(
            err(s.open(NAME, rwc(), Some(&attrs()))),
            OpenError::Corrupt,
            "{what}"
        );
        // The file is left alone.
        assert_eq!(fs::read(&path).unwrap(), bytes, "{what}");
    }
}

#[test]
fn unlink_of_a_corrupt_file_frees_the_name() {
    let (dir, s) = service();
    let path = path_in(dir.path());
    put(&path, b"garbage", 0o600);
    s.unlink(NAME).unwrap();
    assert!(!path.exists());
    assert_eq!(err(s.open(NAME, rw(), None)), OpenError::NotExist);
    let c = s.open(NAME, rwc(), Some(&attrs())).unwrap();
    c.set_active_replica().unwrap();
    c.create_section(b"k", Time::END, b"fresh").unwrap();
    assert_eq!(c.read_section(b"k").unwrap(), b"fresh");
}

#[test]
fn unlink_of_an_incompatible_segment_frees_the_name() {
    let (dir, s) = service();
    let path = path_in(dir.path());
    let mut bytes = valid_segment_bytes();
    bytes[8..12].copy_from_slice(&99u32.to_le_bytes());
    put(&path, &bytes, 0o600);
    s.unlink(NAME).unwrap();
    s.open(NAME, rwc(), Some(&attrs())).unwrap();
}

#[test]
fn a_valid_segment_copied_into_another_directory_opens_with_its_data() {
    // The control for the tests below: the unpatched bytes are accepted.
    let (dir, s) = service();
    put(&path_in(dir.path()), &valid_segment_bytes(), 0o600);
    let c = s.open(NAME, OpenFlags::READ, None).unwrap();
    assert_eq!(c.read_section(b"k").unwrap(), b"value");
    assert_eq!(c.attributes(), attrs());
}

#[test]
fn a_segment_with_mode_0644_is_permission_access() {
    let (dir, s) = service();
    let path = path_in(dir.path());
    for mode in [0o644, 0o640, 0o604, 0o700, 0o666] {
        put(&path, &valid_segment_bytes(), mode);
        let e = err(s.open(NAME, rw(), None));
        assert_eq!(e, OpenError::Permission, "mode {mode:o}");
        assert_eq!(e.ais(), AisError::Access);
    }
    // Stricter than configured is fine.
    put(&path, &valid_segment_bytes(), 0o400);
    s.open(NAME, OpenFlags::READ, None).unwrap();
}

#[test]
fn group_access_accepts_0660_and_still_refuses_world_access() {
    let dir = tempfile::tempdir().unwrap();
    let s = Service::with_config(Config {
        group_access: true,
        ..Config::with_dir(dir.path())
    });
    let path = path_in(dir.path());
    put(&path, &valid_segment_bytes(), 0o660);
    s.open(NAME, rw(), None).unwrap();
    put(&path, &valid_segment_bytes(), 0o664);
    assert_eq!(err(s.open(NAME, rw(), None)), OpenError::Permission);
    // Without group access, 0660 is too loose.
    let strict = Service::with_config(Config::with_dir(dir.path()));
    put(&path, &valid_segment_bytes(), 0o660);
    assert_eq!(err(strict.open(NAME, rw(), None)), OpenError::Permission);
}

#[test]
fn a_segment_owned_by_another_user_is_permission_access() {
    let (dir, s) = service();
    let path = path_in(dir.path());
    put(&path, &valid_segment_bytes(), 0o600);
    // chown needs root (the test environment runs as root); skip otherwise.
    if std::os::unix::fs::chown(&path, Some(65534), Some(65534)).is_err() {
        eprintln!("skipped: chown needs root");
        return;
    }
    let e = err(s.open(NAME, rw(), None));
    assert_eq!(e, OpenError::Permission);
    assert_eq!(e.ais(), AisError::Access);
    let e = err(s.open(NAME, rwc(), Some(&attrs())));
    assert_eq!(e, OpenError::Permission);
    // Nor may it be unlinked through ckpt.
    let e = s.unlink(NAME).unwrap_err();
    assert_eq!(e, UnlinkError::Permission);
    assert_eq!(e.ais(), AisError::Access);
    assert!(path.exists());
}

#[test]
fn a_segment_with_another_layout_version_is_incompatible_library() {
    let (dir, s) = service();
    let path = path_in(dir.path());
    let mut bytes = valid_segment_bytes();
    assert_eq!(&bytes[..8], b"CKPTSEG\0");
    assert_eq!(
        u32::from_le_bytes(bytes[8..12].try_into().unwrap()),
        ckpt_shm::layout::LAYOUT_VERSION
    );
    bytes[8..12].copy_from_slice(&99u32.to_le_bytes());
    put(&path, &bytes, 0o600);
    let e = err(s.open(NAME, rw(), None));
    assert_eq!(e, OpenError::Incompatible);
    assert_eq!(e.ais(), AisError::Library);
    assert_eq!(
        err(s.open(NAME, rwc(), Some(&attrs()))),
        OpenError::Incompatible
    );
}

#[test]
fn an_unpublished_segment_layout_version_0_is_corrupt() {
    let (dir, s) = service();
    let mut bytes = valid_segment_bytes();
    bytes[8..12].copy_from_slice(&0u32.to_le_bytes());
    put(&path_in(dir.path()), &bytes, 0o600);
    assert_eq!(err(s.open(NAME, rw(), None)), OpenError::Corrupt);
}

#[test]
fn a_truncated_copy_of_a_valid_segment_is_corrupt() {
    let (dir, s) = service();
    let path = path_in(dir.path());
    let bytes = valid_segment_bytes();
    for len in [
        0,
        8,
        12,
        576,
        4095,
        4096,
        8192,
        bytes.len() / 2,
        bytes.len() - 1,
    ] {
        put(&path, &bytes[..len], 0o600);
        let e = err(s.open(NAME, rw(), None));
        assert_eq!(e, OpenError::Corrupt, "truncated to {len} bytes");
        assert_eq!(e.ais(), AisError::Library);
    }
}

#[test]
fn a_segment_grown_past_its_recorded_size_is_corrupt() {
    let (dir, s) = service();
    let mut bytes = valid_segment_bytes();
    bytes.extend_from_slice(&[0; 4096]);
    put(&path_in(dir.path()), &bytes, 0o600);
    assert_eq!(err(s.open(NAME, rw(), None)), OpenError::Corrupt);
}

#[test]
fn a_segment_of_another_checkpoint_under_this_name_is_corrupt() {
    // The header records the full name; a file renamed (or a hash collision
    // of two long names) is refused rather than mixed up.
    let (dir, s) = service();
    let other = Service::with_config(Config::with_dir(dir.path()));
    drop(other.open("safCkpt=other", rwc(), Some(&attrs())).unwrap());
    let other_path = dir.path().join(ckpt_shm::dir::file_name(
        &CheckpointName::new("safCkpt=other").unwrap(),
    ));
    fs::rename(&other_path, path_in(dir.path())).unwrap();
    assert_eq!(err(s.open(NAME, rw(), None)), OpenError::Corrupt);
}

#[test]
fn a_directory_under_the_checkpoints_name_is_refused_without_panic() {
    let (dir, s) = service();
    fs::create_dir(path_in(dir.path())).unwrap();
    let e = err(s.open(NAME, rw(), None));
    assert!(
        matches!(
            e,
            OpenError::Io | OpenError::Permission | OpenError::Corrupt
        ),
        "{e:?}"
    );
    assert_ne!(e, OpenError::NotExist);
}

#[test]
fn a_segment_directory_that_is_a_file_is_refused_without_panic() {
    let dir = tempfile::tempdir().unwrap();
    let not_a_dir = dir.path().join("file");
    fs::write(&not_a_dir, b"x").unwrap();
    let s = Service::with_config(Config::with_dir(&not_a_dir));
    let e = err(s.open(NAME, rwc(), Some(&attrs())));
    assert_eq!(e.ais(), AisError::Library, "{e:?}");
}

#[test]
fn damaging_any_immutable_header_byte_never_panics() {
    // Every byte of the header's immutable part (magic, version, sizes,
    // attributes, geometry, name: offsets 0..384) set to 0x00, 0xFF and
    // flipped in its low bit: open either refuses the file or, if the damage
    // is harmless (a field that still agrees with the rest), every operation
    // returns a result. None may panic.
    let (dir, s) = service();
    let path = path_in(dir.path());
    let valid = valid_segment_bytes();
    // Fields every opener depends on: any change to them must be refused.
    let critical = [
        0..8,                // magic
        8..12,               // layout version
        12..16,              // header size
        16..24,              // segment size
        24..28,              // creation flags
        48..56,              // maxSections, openers table size
        64..80,              // index buckets, log size
        92..96,              // name length
        96..96 + NAME.len(), // the name itself
    ];
    for offset in 0..384 {
        for value in [0x00, 0xFF, valid[offset] ^ 1] {
            if value == valid[offset] {
                continue;
            }
            let mut bytes = valid.clone();
            bytes[offset] = value;
            put(&path, &bytes, 0o600);
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| probe(&s)));
            match result {
                Ok(Ok(())) => assert!(
                    !critical.iter().any(|r| r.contains(&offset)),
                    "byte {offset} set to {value:#04x} was accepted"
                ),
                Ok(Err(e)) => assert_ne!(e, OpenError::NotExist, "offset {offset}"),
                Err(_) => panic!("panicked with byte {offset} set to {value:#04x}"),
            }
        }
    }
}

/// A closed segment for `NAME` with four full sections `a`..`d` (16 bytes of
/// 1, 2, 3, 4).
fn four_sections_bytes() -> Vec<u8> {
    let (dir, s) = service();
    {
        let c = s.open(NAME, rwc(), Some(&attrs())).unwrap();
        c.set_active_replica().unwrap();
        for (i, id) in [b"a", b"b", b"c", b"d"].iter().enumerate() {
            c.create_section(*id, Time::END, &[i as u8 + 1; 16])
                .unwrap();
        }
    }
    fs::read(path_in(dir.path())).unwrap()
}

#[test]
fn a_header_whose_layout_attributes_were_altered_is_corrupt() {
    // segment.rs promises that an opener checks "that the geometry recomputed
    // from the attributes agrees with the file" and refuses a damaged file.
    // maxSectionSize (offset 56, u64 LE) and maxSectionIdSize (offset 28, u32
    // LE) decide where every slot and buffer lies: a header that disagrees
    // with the layout must not be read as if it were right.
    let (dir, s) = service();
    let good = four_sections_bytes();
    for (offset, value) in [(56usize, 0xFFu8), (28, 0xFF), (29, 0x01)] {
        let mut bytes = good.clone();
        bytes[offset] = value;
        put(&path_in(dir.path()), &bytes, 0o600);
        match s.open(NAME, rw(), None) {
            Err(e) => assert_eq!(e, OpenError::Corrupt, "offset {offset}"),
            Ok(c) => {
                // If it is accepted, at least the data must be right.
                for (i, id) in [b"a", b"b", b"c", b"d"].iter().enumerate() {
                    assert_eq!(
                        c.read_section(*id),
                        Ok(vec![i as u8 + 1; 16]),
                        "offset {offset} set to {value:#04x}, section {id:?}"
                    );
                }
            }
        }
    }
}
