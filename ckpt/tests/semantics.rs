//! The executable specification of the SA Forum checkpoint semantics
//! (SAI-AIS-CKPT-B.01.01) as ckpt's Rust API implements them.
//!
//! Each test is one sentence of the specification; the tests are grouped by
//! operation in the order of the C API (`saCkptCheckpointOpen` first). Where an
//! error is expected, both the operation's error variant and the `SaAisErrorT`
//! code the C library returns for it (`.ais()`) are asserted. The facts come
//! from `/work/shared/reference/saf-ckpt.md`, section 2 ("Semantics"); the
//! paragraph a test relies on is cited as "§2.x".
//!
//! Every test uses its own segment directory, so tests never see each other.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use ckpt::{
    ActiveReplicaSetError, AisError, Config, CreationAttributes, CreationFlags, ExpirationSetError,
    IterationError, LookupError, Mutation, OpenError, OpenFlags, ReadError, ReadVec,
    RetentionSetError, SectionCreateError, SectionDeleteError, SectionState, SectionsChosen,
    Service, StatusError, SynchronizeError, Time, UnlinkError, UpdateMode, WatchError, WriteError,
    WriteVec,
};

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// A service over a fresh, private segment directory (kept alive by the guard).
fn service() -> (tempfile::TempDir, Service) {
    let dir = tempfile::tempdir().unwrap();
    let service = Service::with_config(Config::with_dir(dir.path()));
    (dir, service)
}

const NAME: &str = "safCkpt=semantics";

fn rwc() -> OpenFlags {
    OpenFlags::READ | OpenFlags::WRITE | OpenFlags::CREATE
}

fn rw() -> OpenFlags {
    OpenFlags::READ | OpenFlags::WRITE
}

/// The csa103 shape: asynchronous, collocated, 60 s retention, 64-byte ids.
fn attrs(sections_max: u32, section_bytes_max: u64) -> CreationAttributes {
    CreationAttributes::new(sections_max, section_bytes_max)
}

/// A synchronous (`WR_ALL_REPLICAS`) checkpoint: always has its replica.
fn sync_attrs(sections_max: u32, section_bytes_max: u64) -> CreationAttributes {
    CreationAttributes {
        flags: CreationFlags::new(UpdateMode::AllReplicas, false),
        ..attrs(sections_max, section_bytes_max)
    }
}

fn with_flags(a: CreationAttributes, mode: UpdateMode, collocated: bool) -> CreationAttributes {
    CreationAttributes {
        flags: CreationFlags::new(mode, collocated),
        ..a
    }
}

/// Creates the checkpoint read-write and, for a collocated asynchronous one,
/// makes this host's replica active, so it is ready for every operation.
fn create(service: &Service, a: &CreationAttributes) -> ckpt::Checkpoint {
    let ckpt = service.open(NAME, rwc(), Some(a)).unwrap();
    if a.flags.is_collocated() && a.flags.mode().is_asynchronous() {
        ckpt.set_active_replica().unwrap();
    }
    ckpt
}

/// The error of a result whose success type has no `Debug` (handles).
fn err<T, E>(r: Result<T, E>) -> E {
    match r {
        Ok(_) => panic!("expected an error, got success"),
        Err(e) => e,
    }
}

fn now() -> Time {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    Time(d.as_nanos() as i64)
}

fn ms(n: i64) -> Time {
    Time(n * 1_000_000)
}

fn after(d: Time) -> Time {
    Time(now().0 + d.0)
}

/// The ids `chosen` selects, in iteration order.
fn ids(ckpt: &ckpt::Checkpoint, chosen: SectionsChosen) -> Vec<Vec<u8>> {
    ckpt.sections(chosen)
        .unwrap()
        .map(|d| d.id.0)
        .collect::<Vec<_>>()
}

fn id_set(ckpt: &ckpt::Checkpoint, chosen: SectionsChosen) -> BTreeSet<Vec<u8>> {
    let list = ids(ckpt, chosen);
    let set: BTreeSet<_> = list.iter().cloned().collect();
    assert_eq!(
        set.len(),
        list.len(),
        "a section was returned twice: {list:?}"
    );
    set
}

fn set(items: &[&[u8]]) -> BTreeSet<Vec<u8>> {
    items.iter().map(|i| i.to_vec()).collect()
}

// ---------------------------------------------------------------------------
// saCkptCheckpointOpen: flags, names, attributes
// ---------------------------------------------------------------------------

mod open {
    use super::*;

    #[test]
    fn open_flags_must_be_a_nonempty_set_of_read_write_create_else_bad_flags() {
        // The Rust `OpenFlags` type cannot hold an invalid set: raw bits are
        // validated by `from_bits`, and the C library reports its `None` as
        // `OpenError::BadFlags` (SA_AIS_ERR_BAD_FLAGS).
        assert!(OpenFlags::from_bits(0).is_none(), "no flag at all");
        assert!(OpenFlags::from_bits(0x8).is_none(), "an unknown bit alone");
        assert!(
            OpenFlags::from_bits(0x7 | 0x8).is_none(),
            "known + unknown bits"
        );
        assert!(OpenFlags::from_bits(0x8000_0000).is_none());
        for bits in 1..=7 {
            assert_eq!(OpenFlags::from_bits(bits).unwrap().bits(), bits);
        }
        assert_eq!(OpenError::BadFlags.ais(), AisError::BadFlags);
        assert_eq!(AisError::BadFlags.code(), 25);
    }

    #[test]
    fn an_empty_name_is_invalid_name() {
        let (_d, s) = service();
        let e = err(s.open("", rwc(), Some(&attrs(2, 8))));
        assert_eq!(e, OpenError::InvalidName);
        assert_eq!(e.ais(), AisError::InvalidParam);
    }

    #[test]
    fn a_name_longer_than_2048_bytes_is_invalid_name_and_2048_bytes_is_accepted() {
        let (_d, s) = service();
        let e = err(s.open(vec![b'n'; 2049], rwc(), Some(&attrs(2, 8))));
        assert_eq!(e, OpenError::InvalidName);
        assert_eq!(e.ais(), AisError::InvalidParam);
        let longest = vec![b'n'; 2048];
        let ckpt = s.open(&longest, rwc(), Some(&attrs(2, 8))).unwrap();
        assert_eq!(ckpt.name().as_bytes(), &longest[..]);
    }

    #[test]
    fn a_name_containing_nul_is_invalid_name() {
        let (_d, s) = service();
        let e = err(s.open(b"safCkpt=a\0b", rwc(), Some(&attrs(2, 8))));
        assert_eq!(e, OpenError::InvalidName);
        assert_eq!(e.ais(), AisError::InvalidParam);
    }

    #[test]
    fn names_are_byte_strings_so_any_non_nul_bytes_name_distinct_checkpoints() {
        let (_d, s) = service();
        let names: [&[u8]; 5] = [b"a/b", b"a%2Fb", b".hidden", b"..", &[0xff, 0xfe, b' ']];
        let mut open = Vec::new();
        for (i, name) in names.iter().enumerate() {
            let c = s.open(name, rwc(), Some(&sync_attrs(2, 8))).unwrap();
            c.create_section(b"i", Time::END, &[i as u8]).unwrap();
            open.push(c);
        }
        for (i, name) in names.iter().enumerate() {
            let c = s.open(name, OpenFlags::READ, None).unwrap();
            assert_eq!(c.read_section(b"i").unwrap(), [i as u8], "name {name:?}");
        }
    }

    #[test]
    fn create_without_creation_attributes_is_missing_attributes() {
        let (_d, s) = service();
        let e = err(s.open(NAME, rwc(), None));
        assert_eq!(e, OpenError::MissingAttributes);
        assert_eq!(e.ais(), AisError::InvalidParam);
    }

    #[test]
    fn creation_attributes_without_create_are_unexpected_attributes() {
        let (_d, s) = service();
        let _existing = create(&s, &attrs(2, 8));
        let e = err(s.open(NAME, rw(), Some(&attrs(2, 8))));
        assert_eq!(e, OpenError::UnexpectedAttributes);
        assert_eq!(e.ais(), AisError::InvalidParam);
    }

    #[test]
    fn checkpoint_size_larger_than_max_sections_times_max_section_size_is_invalid_attributes() {
        let (_d, s) = service();
        let too_big = CreationAttributes {
            checkpoint_bytes: 2 * 8 + 1,
            ..attrs(2, 8)
        };
        let e = err(s.open(NAME, rwc(), Some(&too_big)));
        assert_eq!(e, OpenError::InvalidAttributes);
        assert_eq!(e.ais(), AisError::InvalidParam);
        // Exactly maxSections * maxSectionSize is fine.
        let exact = CreationAttributes {
            checkpoint_bytes: 2 * 8,
            ..attrs(2, 8)
        };
        s.open(NAME, rwc(), Some(&exact)).unwrap();
    }

    #[test]
    fn zero_max_sections_or_a_negative_retention_is_invalid_attributes() {
        let (_d, s) = service();
        for bad in [
            CreationAttributes {
                sections_max: 0,
                checkpoint_bytes: 0,
                ..attrs(2, 8)
            },
            CreationAttributes {
                retention_ns: -1,
                ..attrs(2, 8)
            },
        ] {
            let e = err(s.open(NAME, rwc(), Some(&bad)));
            assert_eq!(e, OpenError::InvalidAttributes, "{bad:?}");
            assert_eq!(e.ais(), AisError::InvalidParam);
        }
    }

    #[test]
    fn attributes_beyond_ckpt_capacity_are_no_resources() {
        let (_d, s) = service();
        let huge_sections = CreationAttributes {
            section_bytes_max: 1 << 41, // beyond the 1 TiB section limit
            checkpoint_bytes: 0,
            ..attrs(2, 8)
        };
        let e = err(s.open(NAME, rwc(), Some(&huge_sections)));
        assert_eq!(e, OpenError::NoResources);
        assert_eq!(e.ais(), AisError::NoResources);
        let too_many = CreationAttributes {
            sections_max: (1 << 22) + 1,
            checkpoint_bytes: 0,
            ..attrs(2, 8)
        };
        let e = err(s.open(NAME, rwc(), Some(&too_many)));
        assert_eq!(e, OpenError::NoResources);
        // Nothing was created.
        assert_eq!(
            err(s.open(NAME, OpenFlags::READ, None)),
            OpenError::NotExist
        );
    }

    #[test]
    fn opening_an_absent_checkpoint_without_create_is_not_exist() {
        let (_d, s) = service();
        for flags in [OpenFlags::READ, OpenFlags::WRITE, rw()] {
            let e = err(s.open(NAME, flags, None));
            assert_eq!(e, OpenError::NotExist);
            assert_eq!(e.ais(), AisError::NotExist);
        }
    }

    #[test]
    fn reopening_with_create_and_equal_attributes_opens_the_same_checkpoint() {
        let (_d, s) = service();
        let a = sync_attrs(4, 16);
        let first = create(&s, &a);
        first.create_section(b"k", Time::END, b"v").unwrap();
        let second = s.open(NAME, rwc(), Some(&a)).unwrap();
        assert_eq!(second.read_section(b"k").unwrap(), b"v");
        assert_eq!(second.attributes(), a);
    }

    #[test]
    fn reopening_with_different_attributes_is_attributes_differ_exist() {
        let (_d, s) = service();
        let a = attrs(4, 16);
        let _first = create(&s, &a);
        let differing = [
            with_flags(a, UpdateMode::AllReplicas, true),
            with_flags(a, UpdateMode::ActiveReplicaWeak, true),
            with_flags(a, UpdateMode::ActiveReplica, false),
            CreationAttributes {
                checkpoint_bytes: 10,
                ..a
            },
            CreationAttributes {
                sections_max: 5,
                ..a
            },
            CreationAttributes {
                section_bytes_max: 32,
                ..a
            },
            CreationAttributes {
                section_id_bytes_max: 8,
                ..a
            },
        ];
        for other in differing {
            let e = err(s.open(NAME, rwc(), Some(&other)));
            assert_eq!(e, OpenError::AttributesDiffer, "{other:?}");
            assert_eq!(e.ais(), AisError::Exist);
        }
    }

    #[test]
    fn reopening_with_a_different_retention_only_is_accepted_and_the_creators_retention_stays() {
        // OpenSAF CKPT_OPEN_SUCCESS_EXIST2_T (§2.4, saCkptCheckpointOpen).
        let (_d, s) = service();
        let a = attrs(4, 16);
        let first = create(&s, &a);
        let other = CreationAttributes {
            retention_ns: 5,
            ..a
        };
        let second = s.open(NAME, rwc(), Some(&other)).unwrap();
        assert_eq!(second.attributes().retention_ns, a.retention_ns);
        assert_eq!(
            second.status().unwrap().attributes.retention_ns,
            a.retention_ns
        );
        assert_eq!(first.attributes(), second.attributes());
    }

    #[test]
    fn opening_an_existing_checkpoint_without_create_reports_its_attributes_and_flags() {
        let (_d, s) = service();
        let a = attrs(4, 16);
        let _first = create(&s, &a);
        let reader = s.open(NAME, OpenFlags::READ, None).unwrap();
        assert_eq!(reader.attributes(), a);
        assert_eq!(reader.flags(), OpenFlags::READ);
        assert_eq!(reader.name().as_bytes(), NAME.as_bytes());
    }
}

// ---------------------------------------------------------------------------
// Open modes: READ, WRITE, CREATE
// ---------------------------------------------------------------------------

mod open_modes {
    use super::*;

    #[test]
    fn a_read_only_handle_gets_access_on_every_modifying_call() {
        let (_d, s) = service();
        let writer = create(&s, &attrs(4, 16));
        writer.create_section(b"k", Time::END, b"v").unwrap();
        let reader = s.open(NAME, OpenFlags::READ, None).unwrap();

        let e = reader
            .write(&[WriteVec {
                id: b"k",
                offset: 0,
                data: b"x",
            }])
            .unwrap_err();
        assert_eq!(e, (0, WriteError::Access));
        assert_eq!(e.1.ais(), AisError::Access);
        assert_eq!(reader.overwrite(b"k", b"x"), Err(WriteError::Access));
        let e = err(reader.create_section(b"n", Time::END, b""));
        assert_eq!(e, SectionCreateError::Access);
        assert_eq!(e.ais(), AisError::Access);
        assert_eq!(
            err(reader.create_section_generated(Time::END, b"")),
            SectionCreateError::Access
        );
        let e = reader.delete_section(b"k").unwrap_err();
        assert_eq!(e, SectionDeleteError::Access);
        assert_eq!(e.ais(), AisError::Access);
        let e = reader.set_expiration(b"k", Time::END).unwrap_err();
        assert_eq!(e, ExpirationSetError::Access);
        assert_eq!(e.ais(), AisError::Access);
        let e = reader.set_active_replica().unwrap_err();
        assert_eq!(e, ActiveReplicaSetError::Access);
        assert_eq!(e.ais(), AisError::Access);
        let e = reader.synchronize(Time::SECOND).unwrap_err();
        assert_eq!(e, SynchronizeError::Access);
        assert_eq!(e.ais(), AisError::Access);

        // Section handles obey the open mode too.
        let section = reader.section(b"k").unwrap();
        assert_eq!(section.overwrite(b"x"), Err(WriteError::Access));
        assert_eq!(section.write_at(0, b"x"), Err(WriteError::Access));
        assert_eq!(
            section.overwrite_with(1, |b| b.set(0, b'x')),
            Err(WriteError::Access)
        );

        // Nothing changed, and reading is allowed.
        assert_eq!(reader.read_section(b"k").unwrap(), b"v");
        assert_eq!(section.version().unwrap(), 1);
    }

    #[test]
    fn a_write_only_handle_gets_access_on_read() {
        let (_d, s) = service();
        let _creator = create(&s, &attrs(4, 16));
        let writer = s.open(NAME, OpenFlags::WRITE, None).unwrap();
        writer.create_section(b"k", Time::END, b"v").unwrap();

        let e = writer.read_section(b"k").unwrap_err();
        assert_eq!(e, ReadError::Access);
        assert_eq!(e.ais(), AisError::Access);
        let mut buf = [0u8; 4];
        let mut v = [ReadVec {
            id: b"k",
            offset: 0,
            buf: &mut buf,
            read_bytes: 0,
        }];
        assert_eq!(writer.read(&mut v).unwrap_err(), (0, ReadError::Access));
        let section = writer.section(b"k").unwrap();
        assert_eq!(section.read(0, &mut buf), Err(ReadError::Access));

        // Writing is allowed.
        writer.overwrite(b"k", b"w").unwrap();
    }

    #[test]
    fn a_create_only_handle_may_neither_read_nor_write() {
        let (_d, s) = service();
        let only_create = s
            .open(NAME, OpenFlags::CREATE, Some(&sync_attrs(4, 16)))
            .unwrap();
        assert_eq!(
            err(only_create.create_section(b"k", Time::END, b"")),
            SectionCreateError::Access
        );
        assert_eq!(only_create.read_section(b"k"), Err(ReadError::Access));
        // The checkpoint exists for others.
        let rwh = s.open(NAME, rw(), None).unwrap();
        rwh.create_section(b"k", Time::END, b"v").unwrap();
    }
}

// ---------------------------------------------------------------------------
// saCkptActiveReplicaSet and the "no active replica" state (§2.1)
// ---------------------------------------------------------------------------

mod active_replica {
    use super::*;

    fn assert_no_active_replica(c: &ckpt::Checkpoint) {
        assert!(!c.has_active_replica());
        let e = err(c.create_section(b"k", Time::END, b"v"));
        assert_eq!(e, SectionCreateError::NoActiveReplica);
        assert_eq!(e.ais(), AisError::NotExist);
        assert_eq!(
            err(c.create_section_generated(Time::END, b"v")),
            SectionCreateError::NoActiveReplica
        );
        let e = c
            .write(&[WriteVec {
                id: b"k",
                offset: 0,
                data: b"x",
            }])
            .unwrap_err();
        assert_eq!(e, (0, WriteError::NoActiveReplica));
        assert_eq!(e.1.ais(), AisError::NotExist);
        assert_eq!(c.overwrite(b"k", b"x"), Err(WriteError::NoActiveReplica));
        let e = c.read_section(b"k").unwrap_err();
        assert_eq!(e, ReadError::NoActiveReplica);
        assert_eq!(e.ais(), AisError::NotExist);
        let mut buf = [0u8; 4];
        let mut v = [ReadVec {
            id: b"k",
            offset: 0,
            buf: &mut buf,
            read_bytes: 0,
        }];
        assert_eq!(c.read(&mut v).unwrap_err(), (0, ReadError::NoActiveReplica));
        let e = c.status().unwrap_err();
        assert_eq!(e, StatusError::NoActiveReplica);
        assert_eq!(e.ais(), AisError::NotExist);
        let e = err(c.sections(SectionsChosen::Any));
        assert_eq!(e, IterationError::NoActiveReplica);
        assert_eq!(e.ais(), AisError::NotExist);
        assert_eq!(
            c.for_each_section(SectionsChosen::Any, |_, _, _| {}),
            Err(IterationError::NoActiveReplica)
        );
        let e = err(c.section(b"k"));
        assert_eq!(e, LookupError::NoActiveReplica);
        assert_eq!(e.ais(), AisError::NotExist);
        let e = c.delete_section(b"k").unwrap_err();
        assert_eq!(e, SectionDeleteError::NoActiveReplica);
        assert_eq!(e.ais(), AisError::NotExist);
        let e = c.set_expiration(b"k", Time::END).unwrap_err();
        assert_eq!(e, ExpirationSetError::NoActiveReplica);
        assert_eq!(e.ais(), AisError::NotExist);
    }

    #[test]
    fn a_collocated_asynchronous_checkpoint_is_not_exist_until_an_active_replica_is_set() {
        let (_d, s) = service();
        let c = s.open(NAME, rwc(), Some(&attrs(4, 16))).unwrap();
        assert_no_active_replica(&c);
        c.set_active_replica().unwrap();
        assert!(c.has_active_replica());
        c.create_section(b"k", Time::END, b"v").unwrap();
        assert_eq!(c.read_section(b"k").unwrap(), b"v");
        assert_eq!(c.status().unwrap().sections, 1);
        assert_eq!(ids(&c, SectionsChosen::Any), [b"k".to_vec()]);
    }

    #[test]
    fn the_weak_asynchronous_mode_also_waits_for_an_active_replica() {
        let (_d, s) = service();
        let a = with_flags(attrs(4, 16), UpdateMode::ActiveReplicaWeak, true);
        let c = s.open(NAME, rwc(), Some(&a)).unwrap();
        assert_no_active_replica(&c);
        c.set_active_replica().unwrap();
        c.create_section(b"k", Time::END, b"v").unwrap();
    }

    #[test]
    fn the_active_replica_is_per_host_so_setting_it_through_any_handle_serves_all() {
        let (_d, s) = service();
        let reader = {
            let creator = s.open(NAME, rwc(), Some(&attrs(4, 16))).unwrap();
            let reader = s.open(NAME, OpenFlags::READ, None).unwrap();
            assert!(!reader.has_active_replica());
            // A different, write-only handle sets it.
            let other = s.open(NAME, OpenFlags::WRITE, None).unwrap();
            other.set_active_replica().unwrap();
            assert!(creator.has_active_replica());
            creator.create_section(b"k", Time::END, b"v").unwrap();
            reader
        };
        assert!(reader.has_active_replica());
        assert_eq!(reader.read_section(b"k").unwrap(), b"v");
        // A handle opened later finds it set too.
        let late = s.open(NAME, OpenFlags::READ, None).unwrap();
        assert_eq!(late.read_section(b"k").unwrap(), b"v");
    }

    #[test]
    fn a_non_collocated_asynchronous_checkpoint_is_usable_at_once() {
        // §2.1: the service chooses the active replica (OpenSAF, openais).
        for mode in [UpdateMode::ActiveReplica, UpdateMode::ActiveReplicaWeak] {
            let (_d, s) = service();
            let a = with_flags(attrs(4, 16), mode, false);
            let c = s.open(NAME, rwc(), Some(&a)).unwrap();
            assert!(c.has_active_replica());
            c.create_section(b"k", Time::END, b"v").unwrap();
            assert_eq!(c.read_section(b"k").unwrap(), b"v");
            assert_eq!(c.status().unwrap().sections, 1);
        }
    }

    #[test]
    fn a_synchronous_checkpoint_is_always_usable() {
        for collocated in [false, true] {
            let (_d, s) = service();
            let a = with_flags(attrs(4, 16), UpdateMode::AllReplicas, collocated);
            let c = s.open(NAME, rwc(), Some(&a)).unwrap();
            assert!(c.has_active_replica());
            c.create_section(b"k", Time::END, b"v").unwrap();
            assert_eq!(c.read_section(b"k").unwrap(), b"v");
        }
    }

    #[test]
    fn set_active_replica_on_a_non_collocated_or_synchronous_checkpoint_is_bad_operation() {
        for (mode, collocated) in [
            (UpdateMode::ActiveReplica, false),
            (UpdateMode::ActiveReplicaWeak, false),
            (UpdateMode::AllReplicas, false),
            (UpdateMode::AllReplicas, true),
        ] {
            let (_d, s) = service();
            let a = with_flags(attrs(4, 16), mode, collocated);
            let c = s.open(NAME, rwc(), Some(&a)).unwrap();
            let e = c.set_active_replica().unwrap_err();
            assert_eq!(e, ActiveReplicaSetError::NotCollocatedAsync, "{mode:?}");
            assert_eq!(e.ais(), AisError::BadOperation);
        }
    }

    #[test]
    fn set_active_replica_needs_a_write_handle() {
        let (_d, s) = service();
        let _c = s.open(NAME, rwc(), Some(&attrs(4, 16))).unwrap();
        let reader = s.open(NAME, OpenFlags::READ, None).unwrap();
        assert_eq!(
            reader.set_active_replica(),
            Err(ActiveReplicaSetError::Access)
        );
        assert!(!reader.has_active_replica());
    }

    #[test]
    fn setting_the_active_replica_again_is_harmless() {
        let (_d, s) = service();
        let c = create(&s, &attrs(4, 16));
        c.create_section(b"k", Time::END, b"v").unwrap();
        c.set_active_replica().unwrap();
        assert_eq!(c.read_section(b"k").unwrap(), b"v");
    }
}

// ---------------------------------------------------------------------------
// The default section (maxSections == 1, §2.3)
// ---------------------------------------------------------------------------

mod default_section {
    use super::*;

    #[test]
    fn a_one_section_checkpoint_has_the_default_section_at_creation_with_the_empty_id_and_size_0() {
        let (_d, s) = service();
        let c = create(&s, &attrs(1, 16));
        let all: Vec<_> = c.sections(SectionsChosen::Any).unwrap().collect();
        assert_eq!(all.len(), 1);
        assert!(all[0].id.is_default());
        assert_eq!(all[0].size_bytes, 0);
        assert_eq!(all[0].expiration, Time::END);
        assert_eq!(all[0].state, SectionState::Valid);
        assert_eq!(ids(&c, SectionsChosen::Forever), [Vec::<u8>::new()]);
        let status = c.status().unwrap();
        assert_eq!(status.sections, 1);
        assert_eq!(status.memory_used_bytes, 0);
        assert_eq!(c.read_section(b"").unwrap(), b"");
        assert_eq!(c.section(b"").unwrap().version().unwrap(), 1);
    }

    #[test]
    fn a_checkpoint_with_more_sections_has_no_default_section() {
        let (_d, s) = service();
        let c = create(&s, &attrs(2, 16));
        assert!(ids(&c, SectionsChosen::Any).is_empty());
        assert_eq!(c.status().unwrap().sections, 0);
        assert_eq!(c.read_section(b""), Err(ReadError::NotExist));
        assert_eq!(err(c.section(b"")), LookupError::NotExist);
    }

    #[test]
    fn creating_a_section_in_a_one_section_checkpoint_is_exist() {
        let (_d, s) = service();
        let c = create(&s, &attrs(1, 16));
        let e = err(c.create_section(b"k", Time::END, b"v"));
        assert_eq!(e, SectionCreateError::Exist);
        assert_eq!(e.ais(), AisError::Exist);
        assert_eq!(
            err(c.create_section(b"", Time::END, b"v")),
            SectionCreateError::Exist
        );
        assert_eq!(
            err(c.create_section_generated(Time::END, b"v")),
            SectionCreateError::Exist
        );
        assert_eq!(c.status().unwrap().sections, 1);
    }

    #[test]
    fn the_default_section_cannot_be_deleted_default_section_invalid_param() {
        let (_d, s) = service();
        let c = create(&s, &attrs(1, 16));
        let e = c.delete_section(b"").unwrap_err();
        assert_eq!(e, SectionDeleteError::DefaultSection);
        assert_eq!(e.ais(), AisError::InvalidParam);
        assert_eq!(c.status().unwrap().sections, 1);
    }

    #[test]
    fn the_default_sections_expiration_cannot_be_set_default_section_invalid_param() {
        let (_d, s) = service();
        let c = create(&s, &attrs(1, 16));
        for t in [Time::END, Time(1), after(Time::SECOND)] {
            let e = c.set_expiration(b"", t).unwrap_err();
            assert_eq!(e, ExpirationSetError::DefaultSection);
            assert_eq!(e.ais(), AisError::InvalidParam);
        }
        assert_eq!(ids(&c, SectionsChosen::Forever).len(), 1);
    }

    #[test]
    fn the_default_section_is_overwritten_written_and_read_through_the_empty_id() {
        let (_d, s) = service();
        let c = create(&s, &attrs(1, 16));
        c.overwrite(b"", b"hello").unwrap();
        assert_eq!(c.read_section(b"").unwrap(), b"hello");
        c.write(&[WriteVec {
            id: b"",
            offset: 5,
            data: b" world",
        }])
        .unwrap();
        assert_eq!(c.read_section(b"").unwrap(), b"hello world");
        let mut buf = [0u8; 5];
        let mut v = [ReadVec {
            id: b"",
            offset: 6,
            buf: &mut buf,
            read_bytes: 0,
        }];
        c.read(&mut v).unwrap();
        assert_eq!(v[0].read_bytes, 5);
        assert_eq!(&buf, b"world");
        let section = c.section(b"").unwrap();
        assert_eq!(section.version().unwrap(), 3);
        let status = c.status().unwrap();
        assert_eq!((status.sections, status.memory_used_bytes), (1, 11));
    }
}

// ---------------------------------------------------------------------------
// saCkptSectionCreate: ids, limits, generated ids (§2.3)
// ---------------------------------------------------------------------------

mod section_create {
    use super::*;

    fn small_ids(sections_max: u32, id_max: u64) -> CreationAttributes {
        CreationAttributes {
            section_id_bytes_max: id_max,
            ..attrs(sections_max, 16)
        }
    }

    #[test]
    fn a_created_section_holds_its_initial_data_at_version_1() {
        let (_d, s) = service();
        let c = create(&s, &attrs(4, 16));
        let section = c.create_section(b"k", Time::END, b"initial").unwrap();
        assert_eq!(section.version().unwrap(), 1);
        assert_eq!(c.read_section(b"k").unwrap(), b"initial");
        let d = c.sections(SectionsChosen::Any).unwrap().next().unwrap();
        assert_eq!(d.id.as_bytes(), b"k");
        assert_eq!(d.size_bytes, 7);
        assert_eq!(d.expiration, Time::END);
        assert_eq!(d.state, SectionState::Valid);
    }

    #[test]
    fn ids_up_to_max_section_id_size_are_accepted_and_longer_ones_are_id_too_long() {
        let (_d, s) = service();
        let c = create(&s, &small_ids(4, 8));
        c.create_section(&[b'i'; 8], Time::END, b"v").unwrap();
        c.create_section(&[0u8, 255, 0], Time::END, b"binary")
            .unwrap();
        let e = err(c.create_section(&[b'i'; 9], Time::END, b"v"));
        assert_eq!(e, SectionCreateError::IdTooLong);
        assert_eq!(e.ais(), AisError::InvalidParam);
        assert_eq!(c.read_section(&[b'i'; 8]).unwrap(), b"v");
        assert_eq!(c.read_section(&[0u8, 255, 0]).unwrap(), b"binary");
    }

    #[test]
    fn every_call_taking_an_id_longer_than_max_section_id_size_is_invalid_param() {
        let (_d, s) = service();
        let c = create(&s, &small_ids(4, 8));
        let long = [b'i'; 9];
        assert_eq!(c.read_section(&long), Err(ReadError::IdTooLong));
        assert_eq!(c.overwrite(&long, b"x"), Err(WriteError::IdTooLong));
        assert_eq!(
            c.write(&[WriteVec {
                id: &long,
                offset: 0,
                data: b"x"
            }]),
            Err((0, WriteError::IdTooLong))
        );
        assert_eq!(c.delete_section(&long), Err(SectionDeleteError::IdTooLong));
        assert_eq!(
            c.set_expiration(&long, Time::END),
            Err(ExpirationSetError::IdTooLong)
        );
        let e = err(c.section(&long));
        assert_eq!(e, LookupError::IdTooLong);
        for code in [
            ReadError::IdTooLong.ais(),
            WriteError::IdTooLong.ais(),
            SectionDeleteError::IdTooLong.ais(),
            ExpirationSetError::IdTooLong.ais(),
            e.ais(),
        ] {
            assert_eq!(code, AisError::InvalidParam);
        }
    }

    #[test]
    fn creating_a_section_whose_id_exists_is_exist_and_keeps_the_old_data() {
        let (_d, s) = service();
        let c = create(&s, &attrs(4, 16));
        c.create_section(b"k", Time::END, b"old").unwrap();
        let e = err(c.create_section(b"k", Time::END, b"new"));
        assert_eq!(e, SectionCreateError::Exist);
        assert_eq!(e.ais(), AisError::Exist);
        assert_eq!(c.read_section(b"k").unwrap(), b"old");
        assert_eq!(c.status().unwrap().sections, 1);
    }

    #[test]
    fn creating_beyond_max_sections_is_no_space_until_a_section_is_deleted() {
        let (_d, s) = service();
        let c = create(&s, &attrs(3, 16));
        for id in [b"a", b"b", b"c"] {
            c.create_section(id, Time::END, b"").unwrap();
        }
        let e = err(c.create_section(b"d", Time::END, b""));
        assert_eq!(e, SectionCreateError::NoSpace);
        assert_eq!(e.ais(), AisError::NoSpace);
        assert_eq!(
            err(c.create_section_generated(Time::END, b"")),
            SectionCreateError::NoSpace
        );
        c.delete_section(b"b").unwrap();
        c.create_section(b"d", Time::END, b"").unwrap();
        assert_eq!(id_set(&c, SectionsChosen::Any), set(&[b"a", b"c", b"d"]));
    }

    #[test]
    fn initial_data_larger_than_max_section_size_is_data_too_large() {
        let (_d, s) = service();
        let c = create(&s, &attrs(4, 16));
        let e = err(c.create_section(b"k", Time::END, &[1; 17]));
        assert_eq!(e, SectionCreateError::DataTooLarge);
        assert_eq!(e.ais(), AisError::InvalidParam);
        assert_eq!(
            err(c.create_section_generated(Time::END, &[1; 17])),
            SectionCreateError::DataTooLarge
        );
        c.create_section(b"k", Time::END, &[1; 16]).unwrap();
        assert_eq!(c.read_section(b"k").unwrap(), [1; 16]);
    }

    #[test]
    fn a_negative_expiration_is_invalid_expiration() {
        let (_d, s) = service();
        let c = create(&s, &attrs(4, 16));
        let e = err(c.create_section(b"k", Time(-1), b""));
        assert_eq!(e, SectionCreateError::InvalidExpiration);
        assert_eq!(e.ais(), AisError::InvalidParam);
        assert_eq!(
            err(c.create_section_generated(Time(-5), b"")),
            SectionCreateError::InvalidExpiration
        );
        assert_eq!(c.status().unwrap().sections, 0);
    }

    #[test]
    fn creating_sections_beyond_checkpoint_size_is_checkpoint_full() {
        let (_d, s) = service();
        let a = CreationAttributes {
            checkpoint_bytes: 20,
            ..attrs(4, 16)
        };
        let c = create(&s, &a);
        c.create_section(b"a", Time::END, &[0; 16]).unwrap();
        c.create_section(b"b", Time::END, &[0; 4]).unwrap(); // exactly 20
        let e = err(c.create_section(b"c", Time::END, &[0; 1]));
        assert_eq!(e, SectionCreateError::CheckpointFull);
        assert_eq!(e.ais(), AisError::NoResources);
        // Empty sections take no bytes.
        c.create_section(b"c", Time::END, b"").unwrap();
        c.delete_section(b"a").unwrap();
        c.create_section(b"d", Time::END, &[0; 16]).unwrap();
        assert_eq!(c.status().unwrap().memory_used_bytes, 20);
    }

    #[test]
    fn generated_ids_are_4_byte_big_endian_and_distinct() {
        let (_d, s) = service();
        let c = create(&s, &attrs(8, 16));
        let mut seen = BTreeSet::new();
        for i in 0..8u8 {
            let (id, section) = c.create_section_generated(Time::END, &[i]).unwrap();
            assert_eq!(id.as_bytes().len(), 4, "{id:?}");
            // A small big-endian number: the high bytes are zero.
            assert_eq!(&id.as_bytes()[..2], &[0, 0], "{id:?}");
            assert!(seen.insert(id.0.clone()), "generated twice: {id:?}");
            assert_eq!(c.read_section(id.as_bytes()).unwrap(), [i]);
            let mut b = [0u8; 1];
            assert_eq!(section.read(0, &mut b).unwrap(), 1);
            assert_eq!(b, [i]);
        }
        assert_eq!(id_set(&c, SectionsChosen::Any), seen);
    }

    #[test]
    fn generated_ids_are_truncated_to_max_section_id_size_below_4_and_stay_distinct() {
        for id_max in [1u64, 2, 3] {
            let (_d, s) = service();
            let c = create(&s, &small_ids(6, id_max));
            let mut seen = BTreeSet::new();
            for _ in 0..6 {
                let (id, _) = c.create_section_generated(Time::END, b"").unwrap();
                assert_eq!(id.as_bytes().len() as u64, id_max, "{id:?}");
                assert!(seen.insert(id.0), "duplicate generated id");
            }
            assert_eq!(id_set(&c, SectionsChosen::Any), seen);
        }
    }

    /// With one-byte ids, 256 generated sections use every id: the next
    /// generated create is `NO_RESOURCES` (no id left), not `NO_SPACE`
    /// (which says `maxSections` sections exist: 300 may here).
    #[test]
    fn generated_ids_that_run_out_before_max_sections_are_no_resources() {
        let (_d, s) = service();
        let c = create(&s, &small_ids(300, 1));
        for _ in 0..256 {
            c.create_section_generated(Time::END, b"").unwrap();
        }
        let e = c.create_section_generated(Time::END, b"").err().unwrap();
        assert_eq!(e, SectionCreateError::NoIdLeft);
        assert_eq!(e.ais(), ckpt::AisError::NoResources);
        // 256 sections exist: fewer than maxSections.
        assert_eq!(c.status().unwrap().sections, 256);
    }

    #[test]
    fn generated_ids_skip_ids_that_are_taken_explicitly() {
        let (_d, s) = service();
        let c = create(&s, &attrs(8, 16));
        // Take the first few big-endian numbers explicitly.
        for n in 0u32..4 {
            c.create_section(&n.to_be_bytes(), Time::END, b"explicit")
                .unwrap();
        }
        for _ in 0..4 {
            let (id, _) = c.create_section_generated(Time::END, b"gen").unwrap();
            assert_eq!(c.read_section(id.as_bytes()).unwrap(), b"gen");
        }
        for n in 0u32..4 {
            assert_eq!(c.read_section(&n.to_be_bytes()).unwrap(), b"explicit");
        }
        assert_eq!(c.status().unwrap().sections, 8);
    }

    #[test]
    fn an_empty_explicit_id_in_a_multi_section_checkpoint_is_invalid_param() {
        // §2.3/§2.4: the empty id is SA_CKPT_DEFAULT_SECTION_ID, which only a
        // one-section checkpoint has; OpenSAF refuses `idLen == 0` with a
        // non-NULL id (INVALID_PARAM). Accepting it creates a section that
        // delete_section and set_expiration then refuse as "the default section".
        let (_d, s) = service();
        let c = create(&s, &attrs(4, 16));
        let e = err(c.create_section(b"", Time::END, b"v"));
        assert_eq!(e.ais(), AisError::InvalidParam);
        assert_eq!(c.status().unwrap().sections, 0);
    }
}

// ---------------------------------------------------------------------------
// saCkptSectionDelete
// ---------------------------------------------------------------------------

mod section_delete {
    use super::*;

    #[test]
    fn a_deleted_section_is_gone_from_every_call() {
        let (_d, s) = service();
        let c = create(&s, &attrs(4, 16));
        c.create_section(b"k", Time::END, b"v").unwrap();
        c.delete_section(b"k").unwrap();
        assert_eq!(c.read_section(b"k"), Err(ReadError::NotExist));
        assert_eq!(c.overwrite(b"k", b"x"), Err(WriteError::NotExist));
        assert_eq!(err(c.section(b"k")), LookupError::NotExist);
        assert!(ids(&c, SectionsChosen::Any).is_empty());
        let e = c.delete_section(b"k").unwrap_err();
        assert_eq!(e, SectionDeleteError::NotExist);
        assert_eq!(e.ais(), AisError::NotExist);
        // The id may be used again.
        c.create_section(b"k", Time::END, b"again").unwrap();
        assert_eq!(c.read_section(b"k").unwrap(), b"again");
    }

    #[test]
    fn deleting_a_section_that_never_existed_is_not_exist() {
        let (_d, s) = service();
        let c = create(&s, &attrs(4, 16));
        assert_eq!(c.delete_section(b"nope"), Err(SectionDeleteError::NotExist));
    }

    #[test]
    fn another_handle_sees_a_delete_at_once() {
        let (_d, s) = service();
        let c = create(&s, &attrs(4, 16));
        c.create_section(b"k", Time::END, b"v").unwrap();
        let other = s.open(NAME, OpenFlags::READ, None).unwrap();
        assert_eq!(other.read_section(b"k").unwrap(), b"v");
        c.delete_section(b"k").unwrap();
        assert_eq!(other.read_section(b"k"), Err(ReadError::NotExist));
    }
}

// ---------------------------------------------------------------------------
// saCkptCheckpointWrite / saCkptSectionOverwrite / saCkptCheckpointRead
// ---------------------------------------------------------------------------

mod write_overwrite_read {
    use super::*;

    fn wv<'a>(id: &'a [u8], offset: u64, data: &'a [u8]) -> WriteVec<'a> {
        WriteVec { id, offset, data }
    }

    fn rv<'a>(id: &'a [u8], offset: u64, buf: &'a mut [u8]) -> ReadVec<'a> {
        ReadVec {
            id,
            offset,
            buf,
            read_bytes: 99,
        }
    }

    #[test]
    fn overwrite_replaces_data_and_size_growing_or_shrinking() {
        let (_d, s) = service();
        let c = create(&s, &attrs(4, 16));
        c.create_section(b"k", Time::END, b"12345").unwrap();
        c.overwrite(b"k", b"a much longer").unwrap();
        assert_eq!(c.read_section(b"k").unwrap(), b"a much longer");
        assert_eq!(c.status().unwrap().memory_used_bytes, 13);
        c.overwrite(b"k", b"ab").unwrap();
        assert_eq!(c.read_section(b"k").unwrap(), b"ab");
        assert_eq!(c.status().unwrap().memory_used_bytes, 2);
        c.overwrite(b"k", b"").unwrap();
        assert_eq!(c.read_section(b"k").unwrap(), b"");
        assert_eq!(c.status().unwrap().memory_used_bytes, 0);
        let d = c.sections(SectionsChosen::Any).unwrap().next().unwrap();
        assert_eq!(d.size_bytes, 0);
    }

    #[test]
    fn overwrite_of_an_empty_section_is_allowed_without_a_prior_write() {
        // §2.3 "Section size": overwrite is allowed even without a prior write.
        let (_d, s) = service();
        let c = create(&s, &attrs(4, 16));
        c.create_section(b"k", Time::END, b"").unwrap();
        c.overwrite(b"k", b"first").unwrap();
        assert_eq!(c.read_section(b"k").unwrap(), b"first");
    }

    #[test]
    fn overwrite_larger_than_max_section_size_is_too_large_and_changes_nothing() {
        let (_d, s) = service();
        let c = create(&s, &attrs(4, 16));
        c.create_section(b"k", Time::END, b"v").unwrap();
        let e = c.overwrite(b"k", &[0; 17]).unwrap_err();
        assert_eq!(e, WriteError::TooLarge);
        assert_eq!(e.ais(), AisError::InvalidParam);
        c.overwrite(b"k", &[7; 16]).unwrap();
        assert_eq!(c.read_section(b"k").unwrap(), [7; 16]);
    }

    #[test]
    fn overwrite_of_a_missing_section_is_not_exist() {
        let (_d, s) = service();
        let c = create(&s, &attrs(4, 16));
        let e = c.overwrite(b"nope", b"x").unwrap_err();
        assert_eq!(e, WriteError::NotExist);
        assert_eq!(e.ais(), AisError::NotExist);
    }

    #[test]
    fn write_at_an_offset_replaces_bytes_there_and_grows_the_section() {
        let (_d, s) = service();
        let c = create(&s, &attrs(4, 16));
        c.create_section(b"k", Time::END, b"hello").unwrap();
        c.write(&[wv(b"k", 3, b"p!!")]).unwrap();
        assert_eq!(c.read_section(b"k").unwrap(), b"help!!");
        // In the middle, without growing.
        c.write(&[wv(b"k", 1, b"E")]).unwrap();
        assert_eq!(c.read_section(b"k").unwrap(), b"hElp!!");
        // At the end: appends.
        c.write(&[wv(b"k", 6, b"?")]).unwrap();
        assert_eq!(c.read_section(b"k").unwrap(), b"hElp!!?");
        assert_eq!(c.status().unwrap().memory_used_bytes, 7);
        // Up to exactly maxSectionSize.
        c.write(&[wv(b"k", 7, &[b'.'; 9])]).unwrap();
        assert_eq!(c.read_section(b"k").unwrap().len(), 16);
    }

    #[test]
    fn a_write_past_the_current_end_grows_the_section_over_zero_bytes() {
        // The spec: "some sections might grow"; OpenSAF and openais grow a
        // section over a hole. Each case first leaves stale bytes in the
        // section's spare buffer, where the hole falls: it must read zeros.
        let (_d, s) = service();
        let c = create(&s, &attrs(4, 16));
        let stale = |id: &[u8], keep: &[u8]| {
            c.overwrite(id, b"QQQQQQQQQQQQQQQQ").unwrap();
            c.overwrite(id, keep).unwrap();
        };
        c.create_section(b"k", Time::END, b"abc").unwrap();
        stale(b"k", b"abc");
        c.write(&[wv(b"k", 6, b"x")]).unwrap();
        assert_eq!(c.read_section(b"k").unwrap(), b"abc\0\0\0x");
        assert_eq!(c.status().unwrap().memory_used_bytes, 7);
        // Through a section handle.
        let section = c.section(b"k").unwrap();
        stale(b"k", b"ab");
        section.write_at(4, b"y").unwrap();
        assert_eq!(c.read_section(b"k").unwrap(), b"ab\0\0y");
        // In a vector: a hole after the size an earlier element of the same
        // section leaves, and one in another section.
        c.create_section(b"m", Time::END, b"").unwrap();
        stale(b"m", b"m");
        stale(b"k", b"abcdef");
        c.write(&[wv(b"k", 0, b"AB"), wv(b"m", 3, b"M"), wv(b"k", 8, b"z")])
            .unwrap();
        assert_eq!(c.read_section(b"k").unwrap(), b"ABcdef\0\0z");
        assert_eq!(c.read_section(b"m").unwrap(), b"m\0\0M");
        // Up to maxSectionSize, not past it.
        c.write(&[wv(b"m", 15, b"!")]).unwrap();
        assert_eq!(c.read_section(b"m").unwrap().len(), 16);
        assert_eq!(
            c.write(&[wv(b"m", 16, b"!")]),
            Err((0, WriteError::TooLarge))
        );
    }

    #[test]
    fn write_whose_offset_plus_length_passes_max_section_size_is_too_large() {
        let (_d, s) = service();
        let c = create(&s, &attrs(4, 16));
        c.create_section(b"k", Time::END, &[0; 10]).unwrap();
        let e = c.write(&[wv(b"k", 10, &[1; 7])]).unwrap_err();
        assert_eq!(e, (0, WriteError::TooLarge));
        assert_eq!(e.1.ais(), AisError::InvalidParam);
        assert_eq!(
            c.write(&[wv(b"k", u64::MAX, b"x")]),
            Err((0, WriteError::TooLarge))
        );
        let section = c.section(b"k").unwrap();
        assert_eq!(section.write_at(10, &[1; 7]), Err(WriteError::TooLarge));
        assert_eq!(c.read_section(b"k").unwrap(), [0; 10]);
    }

    #[test]
    fn write_to_a_missing_section_is_not_exist() {
        let (_d, s) = service();
        let c = create(&s, &attrs(4, 16));
        let e = c.write(&[wv(b"nope", 0, b"x")]).unwrap_err();
        assert_eq!(e, (0, WriteError::NotExist));
        assert_eq!(e.1.ais(), AisError::NotExist);
    }

    #[test]
    fn a_write_vector_is_applied_to_several_sections() {
        let (_d, s) = service();
        let c = create(&s, &attrs(4, 16));
        c.create_section(b"a", Time::END, b"aaaa").unwrap();
        c.create_section(b"b", Time::END, b"").unwrap();
        c.write(&[wv(b"a", 2, b"AA"), wv(b"b", 0, b"bb")]).unwrap();
        assert_eq!(c.read_section(b"a").unwrap(), b"aaAA");
        assert_eq!(c.read_section(b"b").unwrap(), b"bb");
        // An empty vector is a no-op.
        c.write(&[]).unwrap();
    }

    #[test]
    fn a_write_vector_whose_second_element_names_a_missing_section_fails_at_index_1_and_writes_nothing(
    ) {
        let (_d, s) = service();
        let c = create(&s, &attrs(4, 16));
        c.create_section(b"a", Time::END, b"before").unwrap();
        let a = c.section(b"a").unwrap();
        let e = c
            .write(&[wv(b"a", 0, b"AFTER!"), wv(b"missing", 0, b"x")])
            .unwrap_err();
        assert_eq!(e, (1, WriteError::NotExist));
        assert_eq!(e.1.ais(), AisError::NotExist);
        assert_eq!(c.read_section(b"a").unwrap(), b"before");
        assert_eq!(a.version().unwrap(), 1);
    }

    #[test]
    fn a_write_vector_with_any_invalid_element_writes_nothing_and_reports_its_index() {
        let (_d, s) = service();
        let c = create(&s, &attrs(4, 16));
        c.create_section(b"a", Time::END, b"aa").unwrap();
        c.create_section(b"b", Time::END, b"bb").unwrap();
        let cases: [(Vec<WriteVec<'_>>, (usize, WriteError)); 3] = [
            (
                vec![wv(b"a", 0, b"A"), wv(b"b", 0, b"B"), wv(b"b", 17, b"?")],
                (2, WriteError::TooLarge),
            ),
            (
                vec![wv(b"a", 0, b"A"), wv(b"b", 10, &[0; 7])],
                (1, WriteError::TooLarge),
            ),
            (
                vec![wv(b"a", 0, b"A"), wv(&[b'x'; 65], 0, b"B")],
                (1, WriteError::IdTooLong),
            ),
        ];
        for (vector, expected) in cases {
            assert_eq!(c.write(&vector), Err(expected));
            assert_eq!(c.read_section(b"a").unwrap(), b"aa");
            assert_eq!(c.read_section(b"b").unwrap(), b"bb");
        }
        assert_eq!(c.section(b"a").unwrap().version().unwrap(), 1);
        assert_eq!(c.section(b"b").unwrap().version().unwrap(), 1);
    }

    #[test]
    fn write_vector_elements_apply_in_order_so_a_later_element_may_extend_an_earlier_one() {
        // §2.4 saCkptCheckpointWrite: "Writes the ioVector elements in order;
        // a section may grow." The second element starts where the first ended.
        let (_d, s) = service();
        let c = create(&s, &attrs(4, 16));
        c.create_section(b"k", Time::END, b"").unwrap();
        c.write(&[wv(b"k", 0, b"abc"), wv(b"k", 3, b"def")])
            .unwrap();
        assert_eq!(c.read_section(b"k").unwrap(), b"abcdef");
    }

    #[test]
    fn writing_one_section_twice_in_a_vector_counts_its_final_size_once_against_checkpoint_size() {
        let (_d, s) = service();
        let a = CreationAttributes {
            checkpoint_bytes: 4,
            ..attrs(4, 16)
        };
        let c = create(&s, &a);
        c.create_section(b"k", Time::END, b"").unwrap();
        // Sequentially: size 0 -> 4 -> 4; the checkpoint never holds more than 4 bytes.
        c.write(&[wv(b"k", 0, b"abcd"), wv(b"k", 0, b"wxyz")])
            .unwrap();
        assert_eq!(c.read_section(b"k").unwrap(), b"wxyz");
    }

    #[test]
    fn writes_and_overwrites_beyond_checkpoint_size_are_checkpoint_full_and_change_nothing() {
        let (_d, s) = service();
        let a = CreationAttributes {
            checkpoint_bytes: 10,
            ..attrs(4, 16)
        };
        let c = create(&s, &a);
        c.create_section(b"a", Time::END, &[1; 6]).unwrap();
        c.create_section(b"b", Time::END, &[2; 4]).unwrap();
        let e = c.write(&[wv(b"a", 6, b"x")]).unwrap_err();
        assert_eq!(e, (0, WriteError::CheckpointFull));
        assert_eq!(e.1.ais(), AisError::NoResources);
        let e = c.overwrite(b"b", &[3; 5]).unwrap_err();
        assert_eq!(e, WriteError::CheckpointFull);
        let b = c.section(b"b").unwrap();
        assert_eq!(b.overwrite(&[3; 5]), Err(WriteError::CheckpointFull));
        assert_eq!(
            b.overwrite_with(5, |buf| buf.fill(3)),
            Err(WriteError::CheckpointFull)
        );
        // Writing within the current size needs no room; shrinking `a` makes room for `b`.
        c.write(&[wv(b"b", 0, &[4; 4])]).unwrap();
        c.overwrite(b"a", &[1; 2]).unwrap();
        c.overwrite(b"b", &[3; 8]).unwrap();
        assert_eq!(c.status().unwrap().memory_used_bytes, 10);
        assert_eq!(c.read_section(b"a").unwrap(), [1; 2]);
        assert_eq!(c.read_section(b"b").unwrap(), [3; 8]);
    }

    #[test]
    fn read_with_an_offset_returns_the_tail_and_sets_read_bytes() {
        let (_d, s) = service();
        let c = create(&s, &attrs(4, 16));
        c.create_section(b"k", Time::END, b"0123456789").unwrap();
        let mut buf = [0u8; 16 - 4];
        let mut v = [ReadVec {
            id: b"k",
            offset: 4,
            buf: &mut buf,
            read_bytes: 99,
        }];
        c.read(&mut v).unwrap();
        assert_eq!(v[0].read_bytes, 6);
        assert_eq!(&buf[..6], b"456789");
    }

    #[test]
    fn read_copies_at_most_the_buffer_length() {
        let (_d, s) = service();
        let c = create(&s, &attrs(4, 16));
        c.create_section(b"k", Time::END, b"0123456789").unwrap();
        let mut buf = [0u8; 3];
        let mut v = [ReadVec {
            id: b"k",
            offset: 2,
            buf: &mut buf,
            read_bytes: 0,
        }];
        c.read(&mut v).unwrap();
        assert_eq!(v[0].read_bytes, 3);
        assert_eq!(&buf, b"234");
    }

    #[test]
    fn a_read_at_the_end_returns_0_bytes_and_one_past_it_is_offset_past_end() {
        // As OpenSAF and openais: an offset past the section's size is
        // INVALID_PARAM, one at its size reads nothing.
        let (_d, s) = service();
        let c = create(&s, &attrs(4, 16));
        c.create_section(b"k", Time::END, b"0123").unwrap();
        let section = c.section(b"k").unwrap();
        let mut buf = [0xAAu8; 4];
        let mut v = [rv(b"k", 4, &mut buf)];
        c.read(&mut v).unwrap();
        assert_eq!(v[0].read_bytes, 0);
        assert_eq!(section.read(4, &mut [0u8; 4]).unwrap(), 0);
        for offset in [5u64, 12, u64::MAX] {
            let (mut first, mut buf) = ([0u8; 1], [0xAAu8; 4]);
            let mut v = [rv(b"k", 0, &mut first), rv(b"k", offset, &mut buf)];
            let e = c.read(&mut v).unwrap_err();
            assert_eq!(e, (1, ReadError::OffsetPastEnd), "offset {offset}");
            assert_eq!(e.1.ais(), AisError::InvalidParam);
            assert_eq!(
                section.read(offset, &mut [0u8; 4]),
                Err(ReadError::OffsetPastEnd)
            );
        }
    }

    /// SA §3.7.1: a vector write is atomic on the replica; a reader of its
    /// sections in one call sees all of it or none of it, never one section
    /// old and another new (a reader with no check around its copies saw
    /// the mix here in about 1 read of 1,000).
    #[test]
    fn a_read_of_several_sections_sees_each_vector_write_whole() {
        let (_d, s) = service();
        let c = create(&s, &attrs(4, 16));
        for id in [b"a", b"b", b"c"] {
            c.create_section(id, Time::END, &0u64.to_le_bytes())
                .unwrap();
        }
        const WRITES: u64 = 200_000;
        std::thread::scope(|scope| {
            scope.spawn(|| {
                for n in 1..=WRITES {
                    let v = n.to_le_bytes();
                    c.write(&[wv(b"a", 0, &v), wv(b"b", 0, &v), wv(b"c", 0, &v)])
                        .unwrap();
                }
            });
            let (mut reads, mut last) = (0u64, 0u64);
            while last < WRITES {
                let (mut a, mut b, mut cc) = ([0u8; 8], [0u8; 8], [0u8; 8]);
                // Read in the order opposite the writes' flips.
                let mut v = [
                    rv(b"c", 0, &mut cc),
                    rv(b"b", 0, &mut b),
                    rv(b"a", 0, &mut a),
                ];
                c.read(&mut v).unwrap();
                let (a, b, cc) = (
                    u64::from_le_bytes(a),
                    u64::from_le_bytes(b),
                    u64::from_le_bytes(cc),
                );
                assert!(a == b && b == cc, "read {reads}: a {a}, b {b}, c {cc}");
                assert!(a >= last, "went back from {last} to {a}");
                (reads, last) = (reads + 1, a);
            }
        });
    }

    #[test]
    fn a_read_buffer_past_max_section_size_is_too_large_an_offset_only_reads_less() {
        // The spec: dataSize is at most maxSectionSize (§3.7.3); an offset
        // plus size past it is no error (OpenSAF refuses it, §2.3); an
        // offset past the section's end is (the test above).
        let (_d, s) = service();
        let c = create(&s, &attrs(4, 16));
        c.create_section(b"k", Time::END, b"0123").unwrap();
        let mut buf = [0u8; 17];
        let mut v = [ReadVec {
            id: b"k",
            offset: 0,
            buf: &mut buf,
            read_bytes: 0,
        }];
        let e = c.read(&mut v).unwrap_err();
        assert_eq!(e, (0, ReadError::TooLarge));
        assert_eq!(e.1.ais(), AisError::InvalidParam);
        let mut buf = [0u8; 16];
        for (offset, read) in [(2, 2), (4, 0)] {
            let mut v = [ReadVec {
                id: b"k",
                offset,
                buf: &mut buf,
                read_bytes: 9,
            }];
            c.read(&mut v).unwrap();
            assert_eq!(v[0].read_bytes, read, "offset {offset}");
        }
    }

    #[test]
    fn a_read_vector_fills_every_element_and_reports_the_index_of_the_first_failure() {
        let (_d, s) = service();
        let c = create(&s, &attrs(4, 16));
        c.create_section(b"a", Time::END, b"AAAA").unwrap();
        c.create_section(b"b", Time::END, b"BB").unwrap();
        let (mut x, mut y) = ([0u8; 8], [0u8; 8]);
        let mut v = [
            ReadVec {
                id: b"a",
                offset: 1,
                buf: &mut x,
                read_bytes: 0,
            },
            ReadVec {
                id: b"b",
                offset: 0,
                buf: &mut y,
                read_bytes: 0,
            },
        ];
        c.read(&mut v).unwrap();
        assert_eq!((v[0].read_bytes, v[1].read_bytes), (3, 2));
        assert_eq!((&x[..3], &y[..2]), (&b"AAA"[..], &b"BB"[..]));

        let (mut x, mut y, mut z) = ([0u8; 8], [0u8; 8], [0u8; 8]);
        let mut v = [
            ReadVec {
                id: b"a",
                offset: 0,
                buf: &mut x,
                read_bytes: 0,
            },
            ReadVec {
                id: b"missing",
                offset: 0,
                buf: &mut y,
                read_bytes: 0,
            },
            ReadVec {
                id: b"b",
                offset: 0,
                buf: &mut z,
                read_bytes: 0,
            },
        ];
        let e = c.read(&mut v).unwrap_err();
        assert_eq!(e, (1, ReadError::NotExist));
        assert_eq!(e.1.ais(), AisError::NotExist);
    }

    #[test]
    fn read_section_returns_the_whole_section_and_a_missing_one_is_not_exist() {
        let (_d, s) = service();
        let c = create(&s, &attrs(4, 16));
        c.create_section(b"k", Time::END, &[9; 16]).unwrap();
        assert_eq!(c.read_section(b"k").unwrap(), [9; 16]);
        let e = c.read_section(b"other").unwrap_err();
        assert_eq!(e, ReadError::NotExist);
        assert_eq!(e.ais(), AisError::NotExist);
    }

    #[test]
    fn every_handle_reads_what_any_handle_wrote() {
        let (_d, s) = service();
        let writer = create(&s, &attrs(4, 16));
        let reader = s.open(NAME, OpenFlags::READ, None).unwrap();
        writer.create_section(b"k", Time::END, b"one").unwrap();
        assert_eq!(reader.read_section(b"k").unwrap(), b"one");
        writer.overwrite(b"k", b"two").unwrap();
        assert_eq!(reader.read_section(b"k").unwrap(), b"two");
    }
}

// ---------------------------------------------------------------------------
// Section handles
// ---------------------------------------------------------------------------

mod section_handles {
    use super::*;

    #[test]
    fn a_section_handle_reads_and_writes_without_a_lookup() {
        let (_d, s) = service();
        let c = create(&s, &attrs(4, 16));
        let k = c.create_section(b"k", Time::END, b"abc").unwrap();
        k.write_at(3, b"def").unwrap();
        let mut buf = [0u8; 16];
        assert_eq!(k.read(0, &mut buf).unwrap(), 6);
        assert_eq!(&buf[..6], b"abcdef");
        assert_eq!(k.read(4, &mut buf).unwrap(), 2);
        assert_eq!(&buf[..2], b"ef");
        k.overwrite(b"xy").unwrap();
        assert_eq!(c.read_section(b"k").unwrap(), b"xy");
        k.overwrite_with(4, |b| b.copy_from_slice(b"zero")).unwrap();
        assert_eq!(c.read_section(b"k").unwrap(), b"zero");
        assert_eq!(k.overwrite_with(17, |_| {}), Err(WriteError::TooLarge));
    }

    /// `overwrite_with` hands out the spare buffer as a `SpareBuffer`
    /// (atomic accesses: readers of an older version may still copy it); a
    /// fill that panics (here: a write past its end) leaves the old version
    /// and the checkpoint usable.
    #[test]
    fn a_spare_buffer_is_filled_in_place_and_a_panic_keeps_the_old_version() {
        let (_d, s) = service();
        let c = create(&s, &attrs(4, 16));
        let k = c.create_section(b"k", Time::END, b"abc").unwrap();
        k.overwrite_with(8, |b| {
            assert_eq!(b.len(), 8);
            b.fill(b'-');
            b.write_at(2, b"mid");
            b.set(7, b'!');
            let mut back = [0u8; 3];
            b.read_at(2, &mut back);
            assert_eq!(&back, b"mid");
        })
        .unwrap();
        assert_eq!(c.read_section(b"k").unwrap(), b"--mid--!");
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            k.overwrite_with(4, |b| b.write_at(2, b"too long"))
        }));
        assert!(panicked.is_err());
        assert_eq!(c.read_section(b"k").unwrap(), b"--mid--!");
        k.overwrite(b"after").unwrap();
        assert_eq!(c.read_section(b"k").unwrap(), b"after");
    }

    #[test]
    fn version_is_1_at_creation_and_increments_once_per_successful_write() {
        let (_d, s) = service();
        let c = create(&s, &attrs(4, 16));
        let k = c.create_section(b"k", Time::END, b"").unwrap();
        assert_eq!(k.version().unwrap(), 1);
        k.overwrite(b"a").unwrap();
        assert_eq!(k.version().unwrap(), 2);
        k.write_at(1, b"b").unwrap();
        assert_eq!(k.version().unwrap(), 3);
        c.overwrite(b"k", b"c").unwrap();
        assert_eq!(k.version().unwrap(), 4);
        c.write(&[WriteVec {
            id: b"k",
            offset: 0,
            data: b"d",
        }])
        .unwrap();
        assert_eq!(k.version().unwrap(), 5);
        k.overwrite_with(1, |b| b.set(0, b'e')).unwrap();
        assert_eq!(k.version().unwrap(), 6);
        // Failed writes and expiration changes do not make a version.
        assert_eq!(k.write_at(16, b"x"), Err(WriteError::TooLarge));
        assert_eq!(k.overwrite(&[0; 17]), Err(WriteError::TooLarge));
        c.set_expiration(b"k", after(Time::from_secs(3600)))
            .unwrap();
        assert_eq!(k.version().unwrap(), 6);
        // Another handle on the same section sees the same version.
        let again = s.open(NAME, OpenFlags::READ, None).unwrap();
        assert_eq!(again.section(b"k").unwrap().version().unwrap(), 6);
    }

    #[test]
    fn a_handle_of_a_deleted_section_is_not_exist_even_after_a_new_section_reuses_its_slot() {
        let (_d, s) = service();
        // Two slots: after deleting `a`, the only free slot is a's, so `c` reuses it.
        let c = create(&s, &attrs(2, 16));
        let a = c.create_section(b"a", Time::END, b"old").unwrap();
        c.create_section(b"b", Time::END, b"b").unwrap();
        c.delete_section(b"a").unwrap();
        c.create_section(b"c", Time::END, b"new").unwrap();
        let mut buf = [0u8; 8];
        let e = a.read(0, &mut buf).unwrap_err();
        assert_eq!(e, ReadError::NotExist);
        assert_eq!(e.ais(), AisError::NotExist);
        assert_eq!(a.version(), Err(ReadError::NotExist));
        assert_eq!(a.overwrite(b"clobber"), Err(WriteError::NotExist));
        assert_eq!(a.write_at(0, b"clobber"), Err(WriteError::NotExist));
        assert_eq!(
            a.overwrite_with(7, |b| b.copy_from_slice(b"clobber")),
            Err(WriteError::NotExist)
        );
        assert_eq!(c.read_section(b"c").unwrap(), b"new");
        assert_eq!(c.section(b"c").unwrap().version().unwrap(), 1);
    }

    #[test]
    fn a_handle_of_a_section_deleted_and_recreated_with_the_same_id_is_not_exist() {
        let (_d, s) = service();
        let c = create(&s, &attrs(2, 16));
        let old = c.create_section(b"k", Time::END, b"old").unwrap();
        c.delete_section(b"k").unwrap();
        let new = c.create_section(b"k", Time::END, b"new").unwrap();
        assert_eq!(old.overwrite(b"x"), Err(WriteError::NotExist));
        assert_eq!(old.read(0, &mut [0u8; 4]), Err(ReadError::NotExist));
        let mut buf = [0u8; 4];
        assert_eq!(new.read(0, &mut buf).unwrap(), 3);
        assert_eq!(&buf[..3], b"new");
    }
}

// ---------------------------------------------------------------------------
// saCkptSectionExpirationTimeSet and automatic expiry (§2.2)
// ---------------------------------------------------------------------------

mod expiration {
    use super::*;

    fn assert_gone(c: &ckpt::Checkpoint, id: &[u8]) {
        assert_eq!(c.read_section(id), Err(ReadError::NotExist));
        let mut buf = [0u8; 4];
        let mut v = [ReadVec {
            id,
            offset: 0,
            buf: &mut buf,
            read_bytes: 0,
        }];
        assert_eq!(c.read(&mut v), Err((0, ReadError::NotExist)));
        assert_eq!(err(c.section(id)), LookupError::NotExist);
        assert!(!ids(c, SectionsChosen::Any).contains(&id.to_vec()));
        let mut seen = Vec::new();
        c.for_each_section(SectionsChosen::Any, |i, _, _| seen.push(i.to_vec()))
            .unwrap();
        assert!(!seen.contains(&id.to_vec()));
        assert_eq!(c.overwrite(id, b"x"), Err(WriteError::NotExist));
        assert_eq!(
            c.write(&[WriteVec {
                id,
                offset: 0,
                data: b"x"
            }]),
            Err((0, WriteError::NotExist))
        );
        assert_eq!(
            c.set_expiration(id, Time::END),
            Err(ExpirationSetError::NotExist)
        );
        // OpenSAF: deleting an expired section is NOT_EXIST (§2.4).
        assert_eq!(c.delete_section(id), Err(SectionDeleteError::NotExist));
    }

    #[test]
    fn a_section_created_with_an_expiration_in_the_past_is_gone_at_once() {
        let (_d, s) = service();
        let c = create(&s, &attrs(4, 16));
        c.create_section(b"live", Time::END, b"v").unwrap();
        c.create_section(b"old", Time(1), b"v").unwrap();
        assert_gone(&c, b"old");
        assert_eq!(c.read_section(b"live").unwrap(), b"v");
    }

    #[test]
    fn a_section_whose_expiration_passes_vanishes_from_every_call() {
        let (_d, s) = service();
        let c = create(&s, &attrs(4, 16));
        let k = c.create_section(b"k", Time::END, b"v").unwrap();
        c.set_expiration(b"k", after(ms(10))).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        assert_gone(&c, b"k");
        // Its handle too.
        assert_eq!(k.read(0, &mut [0u8; 4]), Err(ReadError::NotExist));
        assert_eq!(k.overwrite(b"x"), Err(WriteError::NotExist));
    }

    #[test]
    fn a_section_created_with_a_near_expiration_vanishes_when_it_passes() {
        let (_d, s) = service();
        let c = create(&s, &attrs(4, 16));
        c.create_section(b"k", after(ms(10)), b"v").unwrap();
        std::thread::sleep(Duration::from_millis(50));
        assert_gone(&c, b"k");
    }

    #[test]
    fn status_sweeps_expired_sections_so_the_count_and_memory_drop() {
        let (_d, s) = service();
        let c = create(&s, &attrs(4, 16));
        c.create_section(b"live", Time::END, b"12").unwrap();
        c.create_section(b"dead", Time(1), b"345").unwrap();
        c.create_section(b"soon", after(ms(10)), b"6789").unwrap();
        std::thread::sleep(Duration::from_millis(50));
        let status = c.status().unwrap();
        assert_eq!(status.sections, 1);
        assert_eq!(status.memory_used_bytes, 2);
    }

    #[test]
    fn set_expiration_to_end_keeps_the_section_forever() {
        let (_d, s) = service();
        let c = create(&s, &attrs(4, 16));
        c.create_section(b"k", after(ms(200)), b"v").unwrap();
        c.set_expiration(b"k", Time::END).unwrap();
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(c.read_section(b"k").unwrap(), b"v");
        let d = c.sections(SectionsChosen::Any).unwrap().next().unwrap();
        assert_eq!(d.expiration, Time::END);
        assert_eq!(ids(&c, SectionsChosen::Forever), [b"k".to_vec()]);
    }

    #[test]
    fn set_expiration_is_reported_by_iteration() {
        let (_d, s) = service();
        let c = create(&s, &attrs(4, 16));
        c.create_section(b"k", Time::END, b"v").unwrap();
        let t = after(Time::from_secs(3600));
        c.set_expiration(b"k", t).unwrap();
        let d = c.sections(SectionsChosen::Any).unwrap().next().unwrap();
        assert_eq!(d.expiration, t);
        assert!(ids(&c, SectionsChosen::Forever).is_empty());
    }

    #[test]
    fn a_negative_expiration_is_invalid_expiration() {
        let (_d, s) = service();
        let c = create(&s, &attrs(4, 16));
        c.create_section(b"k", Time::END, b"v").unwrap();
        let e = c.set_expiration(b"k", Time(-1)).unwrap_err();
        assert_eq!(e, ExpirationSetError::InvalidExpiration);
        assert_eq!(e.ais(), AisError::InvalidParam);
        assert_eq!(c.read_section(b"k").unwrap(), b"v");
    }

    #[test]
    fn set_expiration_on_a_missing_section_is_not_exist() {
        let (_d, s) = service();
        let c = create(&s, &attrs(4, 16));
        let e = c.set_expiration(b"nope", Time::END).unwrap_err();
        assert_eq!(e, ExpirationSetError::NotExist);
        assert_eq!(e.ais(), AisError::NotExist);
    }

    #[test]
    fn an_expired_section_frees_its_place_among_max_sections() {
        let (_d, s) = service();
        let c = create(&s, &attrs(2, 16));
        c.create_section(b"a", Time::END, b"").unwrap();
        c.create_section(b"b", Time(1), b"").unwrap();
        c.create_section(b"c", Time::END, b"").unwrap();
        assert_eq!(id_set(&c, SectionsChosen::Any), set(&[b"a", b"c"]));
    }

    #[test]
    fn an_expired_sections_id_can_be_created_again() {
        // §2.2: an expired section is deleted automatically when its time is reached.
        let (_d, s) = service();
        let c = create(&s, &attrs(4, 16));
        c.create_section(b"k", Time(1), b"old").unwrap();
        c.create_section(b"k", Time::END, b"new").unwrap();
        assert_eq!(c.read_section(b"k").unwrap(), b"new");
    }

    #[test]
    fn an_expired_sections_bytes_do_not_count_against_checkpoint_size() {
        // §2.2: an expired section is deleted automatically when its time is reached.
        let (_d, s) = service();
        let a = CreationAttributes {
            checkpoint_bytes: 16,
            ..attrs(4, 16)
        };
        let c = create(&s, &a);
        c.create_section(b"old", Time(1), &[0; 16]).unwrap();
        c.create_section(b"new", Time::END, &[1; 16]).unwrap();
        assert_eq!(c.read_section(b"new").unwrap(), [1; 16]);
        c.overwrite(b"new", &[2; 16]).unwrap();
    }

    #[test]
    fn an_expired_sections_bytes_do_not_block_growth_by_any_write_path() {
        // The zero-copy overwrite sweeps expired sections like every other write.
        let (_d, s) = service();
        let a = CreationAttributes {
            checkpoint_bytes: 16,
            ..attrs(4, 16)
        };
        let c = create(&s, &a);
        let keep = c.create_section(b"keep", Time::END, &[0; 8]).unwrap();
        c.create_section(b"brief", after(ms(30)), &[0; 8]).unwrap();
        std::thread::sleep(Duration::from_millis(60));
        keep.overwrite_with(16, |buf| buf.fill(7)).unwrap();
        assert_eq!(c.read_section(b"keep").unwrap(), [7; 16]);
        assert_eq!(c.status().unwrap().memory_used_bytes, 16);
    }
}

// ---------------------------------------------------------------------------
// saCkptSectionIteration* (§2.4)
// ---------------------------------------------------------------------------

mod iteration {
    use super::*;

    /// forever: f1, f2; early: now+1h; late: now+2h; expired: gone.
    fn mixed(c: &ckpt::Checkpoint) -> (Time, Time) {
        let early = after(Time::from_secs(3600));
        let late = after(Time::from_secs(7200));
        c.create_section(b"f1", Time::END, b"1").unwrap();
        c.create_section(b"early", early, b"22").unwrap();
        c.create_section(b"expired", Time(1), b"333").unwrap();
        c.create_section(b"late", late, b"4444").unwrap();
        c.create_section(b"f2", Time::END, b"55555").unwrap();
        (early, late)
    }

    #[test]
    fn forever_selects_the_sections_that_never_expire() {
        let (_d, s) = service();
        let c = create(&s, &attrs(8, 16));
        mixed(&c);
        assert_eq!(id_set(&c, SectionsChosen::Forever), set(&[b"f1", b"f2"]));
    }

    #[test]
    fn leq_selects_sections_expiring_at_or_before_the_time() {
        let (_d, s) = service();
        let c = create(&s, &attrs(8, 16));
        let (early, late) = mixed(&c);
        let between = Time((early.0 + late.0) / 2);
        let leq = SectionsChosen::ExpiringAtOrBefore;
        assert_eq!(id_set(&c, leq(between)), set(&[b"early"]));
        assert_eq!(id_set(&c, leq(early)), set(&[b"early"]), "inclusive");
        assert_eq!(id_set(&c, leq(Time(early.0 - 1))), set(&[]));
        assert_eq!(id_set(&c, leq(late)), set(&[b"early", b"late"]));
        // SA_TIME_END is a time like any other: every section expires at or before it.
        assert_eq!(
            id_set(&c, leq(Time::END)),
            set(&[b"early", b"late", b"f1", b"f2"])
        );
    }

    #[test]
    fn geq_selects_sections_expiring_at_or_after_the_time_including_never() {
        let (_d, s) = service();
        let c = create(&s, &attrs(8, 16));
        let (early, late) = mixed(&c);
        let between = Time((early.0 + late.0) / 2);
        let geq = SectionsChosen::ExpiringAtOrAfter;
        assert_eq!(id_set(&c, geq(between)), set(&[b"late", b"f1", b"f2"]));
        assert_eq!(
            id_set(&c, geq(late)),
            set(&[b"late", b"f1", b"f2"]),
            "inclusive"
        );
        assert_eq!(
            id_set(&c, geq(early)),
            set(&[b"early", b"late", b"f1", b"f2"])
        );
        assert_eq!(id_set(&c, geq(Time::END)), set(&[b"f1", b"f2"]));
        // The expired section is not returned even for a time before its expiration.
        assert_eq!(
            id_set(&c, geq(Time(0))),
            set(&[b"early", b"late", b"f1", b"f2"])
        );
    }

    #[test]
    fn corrupted_selects_nothing_because_ckpt_never_leaves_a_corrupted_section() {
        let (_d, s) = service();
        let c = create(&s, &attrs(8, 16));
        mixed(&c);
        assert!(ids(&c, SectionsChosen::Corrupted).is_empty());
        let weak = with_flags(attrs(8, 16), UpdateMode::ActiveReplicaWeak, false);
        let (_d2, s2) = service();
        let w = create(&s2, &weak);
        mixed(&w);
        assert!(ids(&w, SectionsChosen::Corrupted).is_empty());
    }

    #[test]
    fn any_selects_every_unexpired_section_with_its_descriptor() {
        let (_d, s) = service();
        let c = create(&s, &attrs(8, 16));
        let start = now();
        let (early, late) = mixed(&c);
        let all: Vec<_> = c.sections(SectionsChosen::Any).unwrap().collect();
        let by_id = |id: &[u8]| all.iter().find(|d| d.id.as_bytes() == id).unwrap();
        assert_eq!(all.len(), 4);
        assert_eq!(
            (by_id(b"f1").size_bytes, by_id(b"f1").expiration),
            (1, Time::END)
        );
        assert_eq!(
            (by_id(b"early").size_bytes, by_id(b"early").expiration),
            (2, early)
        );
        assert_eq!(
            (by_id(b"late").size_bytes, by_id(b"late").expiration),
            (4, late)
        );
        assert_eq!(
            (by_id(b"f2").size_bytes, by_id(b"f2").expiration),
            (5, Time::END)
        );
        for d in &all {
            assert_eq!(d.state, SectionState::Valid);
            // lastUpdate is the wall clock at the write (coarse clock: allow 50 ms).
            assert!(d.last_update.0 >= start.0 - 50_000_000, "{d:?}");
            assert!(d.last_update.0 <= now().0 + 50_000_000, "{d:?}");
        }
    }

    #[test]
    fn for_each_section_visits_the_same_sections_as_the_iterator() {
        let (_d, s) = service();
        let c = create(&s, &attrs(8, 16));
        let (early, _) = mixed(&c);
        for chosen in [
            SectionsChosen::Forever,
            SectionsChosen::ExpiringAtOrBefore(early),
            SectionsChosen::ExpiringAtOrAfter(early),
            SectionsChosen::Corrupted,
            SectionsChosen::Any,
        ] {
            let mut seen = Vec::new();
            c.for_each_section(chosen, |id, size, exp| seen.push((id.to_vec(), size, exp)))
                .unwrap();
            let from_iter: Vec<_> = c
                .sections(chosen)
                .unwrap()
                .map(|d| (d.id.0, d.size_bytes, d.expiration))
                .collect();
            assert_eq!(seen, from_iter, "{chosen:?}");
        }
    }

    #[test]
    fn iteration_returns_each_section_exactly_once_after_churn() {
        let (_d, s) = service();
        let c = create(&s, &attrs(64, 8));
        let mut expected = BTreeSet::new();
        for round in 0..4u32 {
            for i in 0..40u32 {
                let id = format!("s{round}-{i}").into_bytes();
                if c.create_section(&id, Time::END, b"").is_ok() {
                    expected.insert(id);
                }
            }
            let victims: Vec<_> = expected.iter().step_by(2).cloned().collect();
            for id in victims {
                c.delete_section(&id).unwrap();
                expected.remove(&id);
            }
        }
        assert_eq!(id_set(&c, SectionsChosen::Any), expected);
        assert_eq!(c.status().unwrap().sections as usize, expected.len());
    }

    #[test]
    fn sections_that_exist_throughout_an_iteration_are_returned_even_if_others_change() {
        // §2.4 saCkptSectionIterationNext: each section that existed at
        // Initialize and was not deleted before Finalize is returned exactly once.
        let (_d, s) = service();
        let c = create(&s, &attrs(16, 8));
        for i in 0..8u8 {
            c.create_section(&[b'k', i], Time::END, b"").unwrap();
        }
        let mut it = c.sections(SectionsChosen::Any).unwrap();
        let first = it.next().unwrap();
        // Delete two others and create new ones mid-iteration.
        let mut deleted = BTreeSet::new();
        for i in [3u8, 6] {
            let id = vec![b'k', i];
            if id != first.id.0 {
                c.delete_section(&id).unwrap();
                deleted.insert(id);
            }
        }
        for i in 0..4u8 {
            c.create_section(&[b'n', i], Time::END, b"").unwrap();
        }
        let mut seen = vec![first.id.0];
        seen.extend(it.map(|d| d.id.0));
        let unique: BTreeSet<_> = seen.iter().cloned().collect();
        assert_eq!(unique.len(), seen.len(), "returned twice: {seen:?}");
        for i in 0..8u8 {
            let id = vec![b'k', i];
            if !deleted.contains(&id) {
                assert!(unique.contains(&id), "missing {id:?}");
            }
        }
    }
}

// ---------------------------------------------------------------------------
// saCkptCheckpointStatusGet
// ---------------------------------------------------------------------------

mod status {
    use super::*;

    #[test]
    fn status_counts_sections_and_sums_their_sizes_as_memory_used() {
        let (_d, s) = service();
        let a = attrs(8, 16);
        let c = create(&s, &a);
        let st = c.status().unwrap();
        assert_eq!((st.sections, st.memory_used_bytes), (0, 0));
        assert_eq!(st.attributes, a);
        c.create_section(b"a", Time::END, &[0; 5]).unwrap();
        c.create_section(b"b", Time::END, &[0; 3]).unwrap();
        c.create_section(b"c", Time::END, b"").unwrap();
        let st = c.status().unwrap();
        assert_eq!((st.sections, st.memory_used_bytes), (3, 8));
        c.write(&[WriteVec {
            id: b"c",
            offset: 0,
            data: &[1; 10],
        }])
        .unwrap();
        c.overwrite(b"a", &[2; 1]).unwrap();
        let st = c.status().unwrap();
        assert_eq!((st.sections, st.memory_used_bytes), (3, 14));
        c.delete_section(b"c").unwrap();
        let st = c.status().unwrap();
        assert_eq!((st.sections, st.memory_used_bytes), (2, 4));
        // Failed operations change nothing.
        let _ = c.write(&[WriteVec {
            id: b"a",
            offset: 0,
            data: &[0; 20],
        }]);
        let _ = c.create_section(b"a", Time::END, &[0; 7]);
        let st = c.status().unwrap();
        assert_eq!((st.sections, st.memory_used_bytes), (2, 4));
    }

    #[test]
    fn status_is_the_same_through_every_handle() {
        let (_d, s) = service();
        let c = create(&s, &attrs(8, 16));
        c.create_section(b"a", Time::END, &[0; 5]).unwrap();
        let r = s.open(NAME, OpenFlags::READ, None).unwrap();
        assert_eq!(r.status().unwrap(), c.status().unwrap());
    }
}

// ---------------------------------------------------------------------------
// saCkptCheckpointUnlink (§2.2)
// ---------------------------------------------------------------------------

mod unlink {
    use super::*;

    #[test]
    fn unlink_frees_the_name_at_once() {
        let (_d, s) = service();
        let c = create(&s, &attrs(4, 16));
        c.create_section(b"k", Time::END, b"v").unwrap();
        s.unlink(NAME).unwrap();
        let e = err(s.open(NAME, OpenFlags::READ, None));
        assert_eq!(e, OpenError::NotExist);
        assert_eq!(e.ais(), AisError::NotExist);
    }

    #[test]
    fn existing_handles_keep_full_access_after_unlink() {
        let (_d, s) = service();
        let c = create(&s, &attrs(4, 16));
        c.create_section(b"k", Time::END, b"v").unwrap();
        let reader = s.open(NAME, OpenFlags::READ, None).unwrap();
        s.unlink(NAME).unwrap();
        c.overwrite(b"k", b"after").unwrap();
        // OpenSAF: SectionCreate still succeeds after unlink (§2.2).
        c.create_section(b"n", Time::END, b"new").unwrap();
        assert_eq!(reader.read_section(b"k").unwrap(), b"after");
        assert_eq!(reader.read_section(b"n").unwrap(), b"new");
        assert_eq!(c.status().unwrap().sections, 2);
    }

    #[test]
    fn a_new_checkpoint_with_the_unlinked_name_is_a_different_one() {
        let (_d, s) = service();
        let old = create(&s, &attrs(4, 16));
        old.create_section(b"k", Time::END, b"old").unwrap();
        s.unlink(NAME).unwrap();
        // Even different attributes are fine: it is a new checkpoint.
        let new = create(&s, &sync_attrs(8, 32));
        assert_eq!(new.attributes(), sync_attrs(8, 32));
        assert_eq!(new.read_section(b"k"), Err(ReadError::NotExist));
        new.create_section(b"k", Time::END, b"new").unwrap();
        old.overwrite(b"k", b"OLD").unwrap();
        assert_eq!(new.read_section(b"k").unwrap(), b"new");
        assert_eq!(old.read_section(b"k").unwrap(), b"OLD");
        // Closing the old instance does not touch the new one.
        drop(old);
        let again = s.open(NAME, OpenFlags::READ, None).unwrap();
        assert_eq!(again.read_section(b"k").unwrap(), b"new");
    }

    #[test]
    fn closing_the_last_handle_of_an_unlinked_checkpoint_with_retention_0_spares_the_new_one() {
        let (_d, s) = service();
        let a = CreationAttributes {
            retention_ns: 0,
            ..sync_attrs(4, 16)
        };
        let old = create(&s, &a);
        s.unlink(NAME).unwrap();
        let new = create(&s, &sync_attrs(4, 16));
        new.create_section(b"k", Time::END, b"new").unwrap();
        drop(old);
        drop(new); // 60 s retention: stays
        let again = s.open(NAME, OpenFlags::READ, None).unwrap();
        assert_eq!(again.read_section(b"k").unwrap(), b"new");
    }

    #[test]
    fn unlink_of_a_checkpoint_nobody_has_open_deletes_it() {
        let (_d, s) = service();
        drop(create(&s, &attrs(4, 16))); // 60 s retention: it stays after the close
        s.open(NAME, OpenFlags::READ, None).unwrap().close();
        s.unlink(NAME).unwrap();
        assert_eq!(
            err(s.open(NAME, OpenFlags::READ, None)),
            OpenError::NotExist
        );
        assert_eq!(s.unlink(NAME), Err(UnlinkError::NotExist));
    }

    #[test]
    fn set_retention_on_an_unlinked_checkpoint_is_unlinked_bad_operation() {
        let (_d, s) = service();
        let c = create(&s, &attrs(4, 16));
        s.unlink(NAME).unwrap();
        let e = c.set_retention(Time::SECOND).unwrap_err();
        assert_eq!(e, RetentionSetError::Unlinked);
        assert_eq!(e.ais(), AisError::BadOperation);
    }

    #[test]
    fn unlink_of_an_absent_name_is_not_exist() {
        let (_d, s) = service();
        let e = s.unlink(NAME).unwrap_err();
        assert_eq!(e, UnlinkError::NotExist);
        assert_eq!(e.ais(), AisError::NotExist);
    }

    #[test]
    fn unlinking_twice_is_not_exist_the_second_time() {
        let (_d, s) = service();
        let _c = create(&s, &attrs(4, 16));
        s.unlink(NAME).unwrap();
        assert_eq!(s.unlink(NAME), Err(UnlinkError::NotExist));
    }

    #[test]
    fn unlink_of_an_invalid_name_is_invalid_name() {
        let (_d, s) = service();
        for name in [&b""[..], &[b'n'; 2049][..], &b"a\0b"[..]] {
            let e = s.unlink(name).unwrap_err();
            assert_eq!(e, UnlinkError::InvalidName);
            assert_eq!(e.ais(), AisError::InvalidParam);
        }
    }
}

// ---------------------------------------------------------------------------
// Retention (saCkptCheckpointRetentionDurationSet, §2.2)
// ---------------------------------------------------------------------------

mod retention {
    use super::*;

    fn retained(ns: i64) -> CreationAttributes {
        CreationAttributes {
            retention_ns: ns,
            ..attrs(4, 16)
        }
    }

    #[test]
    fn with_retention_0_the_last_close_deletes_the_checkpoint() {
        let (_d, s) = service();
        let c = create(&s, &retained(0));
        c.create_section(b"k", Time::END, b"v").unwrap();
        let second = s.open(NAME, OpenFlags::READ, None).unwrap();
        drop(c);
        // Still open through `second`.
        assert_eq!(second.read_section(b"k").unwrap(), b"v");
        drop(second);
        assert_eq!(
            err(s.open(NAME, OpenFlags::READ, None)),
            OpenError::NotExist
        );
        // OpenSAF cpsv_it_rdset_05: a later unlink is NOT_EXIST.
        assert_eq!(s.unlink(NAME), Err(UnlinkError::NotExist));
    }

    #[test]
    fn a_reopen_within_the_retention_duration_finds_the_data_and_after_it_the_checkpoint_is_gone() {
        let (_d, s) = service();
        let c = create(&s, &retained(200_000_000));
        c.create_section(b"k", Time::END, b"kept").unwrap();
        c.close();
        let again = s.open(NAME, OpenFlags::READ, None).unwrap();
        assert_eq!(again.read_section(b"k").unwrap(), b"kept");
        again.close();
        std::thread::sleep(Duration::from_millis(400));
        let e = err(s.open(NAME, OpenFlags::READ, None));
        assert_eq!(e, OpenError::NotExist);
        // The name is free for a new checkpoint with other attributes.
        let new = create(&s, &sync_attrs(2, 8));
        assert_eq!(new.read_section(b"k"), Err(ReadError::NotExist));
    }

    #[test]
    fn unlink_after_the_retention_duration_ran_out_is_not_exist() {
        // §2.2: if nobody reopens it within the duration, the checkpoint is
        // deleted; like after a retention-0 close (cpsv_it_rdset_05), a later
        // unlink is NOT_EXIST.
        let (_d, s) = service();
        create(&s, &retained(100_000_000)).close();
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(s.unlink(NAME), Err(UnlinkError::NotExist));
    }

    #[test]
    fn set_retention_changes_how_long_a_closed_checkpoint_survives() {
        let (_d, s) = service();
        let c = create(&s, &retained(Time::from_secs(3600).0));
        c.set_retention(Time(0)).unwrap();
        c.close();
        assert_eq!(
            err(s.open(NAME, OpenFlags::READ, None)),
            OpenError::NotExist
        );

        let (_d, s) = service();
        let c = create(&s, &retained(0));
        c.set_retention(Time::from_secs(3600)).unwrap();
        c.create_section(b"k", Time::END, b"v").unwrap();
        c.close();
        let again = s.open(NAME, OpenFlags::READ, None).unwrap();
        assert_eq!(again.read_section(b"k").unwrap(), b"v");
    }

    #[test]
    fn a_negative_retention_is_invalid_param() {
        let (_d, s) = service();
        let c = create(&s, &retained(0));
        let e = c.set_retention(Time(-1)).unwrap_err();
        assert_eq!(e, RetentionSetError::InvalidParam);
        assert_eq!(e.ais(), AisError::InvalidParam);
        // Still retention 0: the close deletes it.
        c.close();
        assert_eq!(
            err(s.open(NAME, OpenFlags::READ, None)),
            OpenError::NotExist
        );
    }

    #[test]
    fn set_retention_from_a_read_only_handle_is_allowed() {
        // The spec lists no ACCESS error for saCkptCheckpointRetentionDurationSet.
        let (_d, s) = service();
        let c = create(&s, &retained(0));
        let r = s.open(NAME, OpenFlags::READ, None).unwrap();
        r.set_retention(Time::from_secs(3600)).unwrap();
        drop(c);
        drop(r);
        s.open(NAME, OpenFlags::READ, None).unwrap();
    }
}

// ---------------------------------------------------------------------------
// saCkptCheckpointSynchronize
// ---------------------------------------------------------------------------

mod synchronize {
    use super::*;

    #[test]
    fn synchronize_needs_a_write_handle() {
        let (_d, s) = service();
        let _c = create(&s, &attrs(4, 16));
        let r = s.open(NAME, OpenFlags::READ, None).unwrap();
        let e = r.synchronize(Time::SECOND).unwrap_err();
        assert_eq!(e, SynchronizeError::Access);
        assert_eq!(e.ais(), AisError::Access);
    }

    #[test]
    fn synchronize_on_a_synchronous_checkpoint_is_bad_operation() {
        let (_d, s) = service();
        let c = create(&s, &sync_attrs(4, 16));
        let e = c.synchronize(Time::SECOND).unwrap_err();
        assert_eq!(e, SynchronizeError::Synchronous);
        assert_eq!(e.ais(), AisError::BadOperation);
    }

    #[test]
    fn a_negative_timeout_is_invalid_timeout() {
        let (_d, s) = service();
        let c = create(&s, &attrs(4, 16));
        let e = c.synchronize(Time(-1)).unwrap_err();
        assert_eq!(e, SynchronizeError::InvalidTimeout);
        assert_eq!(e.ais(), AisError::InvalidParam);
    }

    #[test]
    fn synchronize_without_an_active_replica_is_not_exist() {
        let (_d, s) = service();
        let c = s.open(NAME, rwc(), Some(&attrs(4, 16))).unwrap();
        let e = c.synchronize(Time::SECOND).unwrap_err();
        assert_eq!(e, SynchronizeError::NoActiveReplica);
        assert_eq!(e.ais(), AisError::NotExist);
        c.set_active_replica().unwrap();
        c.synchronize(Time::SECOND).unwrap();
    }

    #[test]
    fn synchronize_succeeds_on_asynchronous_checkpoints_with_an_active_replica() {
        for (mode, collocated) in [
            (UpdateMode::ActiveReplica, true),
            (UpdateMode::ActiveReplica, false),
            (UpdateMode::ActiveReplicaWeak, true),
            (UpdateMode::ActiveReplicaWeak, false),
        ] {
            let (_d, s) = service();
            let c = create(&s, &with_flags(attrs(4, 16), mode, collocated));
            c.create_section(b"k", Time::END, b"v").unwrap();
            c.synchronize(Time(0)).unwrap();
            c.synchronize(Time::END).unwrap();
            let w = s.open(NAME, OpenFlags::WRITE, None).unwrap();
            w.synchronize(Time::SECOND).unwrap();
        }
    }
}

// ---------------------------------------------------------------------------
// watch(): following changes (hot standby)
// ---------------------------------------------------------------------------

mod watch {
    use super::*;

    #[derive(Debug, Clone, PartialEq, Eq)]
    enum Seen {
        Create(Vec<u8>, Time, Vec<u8>),
        Write(Vec<u8>, u64, Vec<u8>),
        Overwrite(Vec<u8>, Vec<u8>),
        Delete(Vec<u8>),
        ExpirationSet(Vec<u8>, Time),
    }

    /// Every pending change as (seq, version, what).
    fn drain(w: &mut ckpt::Watcher<'_>) -> Vec<(u64, u64, Seen)> {
        let mut out = Vec::new();
        while let Some(c) = w.next_change().unwrap() {
            let seen = match c.mutation {
                Mutation::Create {
                    id,
                    expiration,
                    data,
                } => Seen::Create(id.to_vec(), expiration, data.to_vec()),
                Mutation::Write { id, offset, data } => {
                    Seen::Write(id.to_vec(), offset, data.to_vec())
                }
                Mutation::Overwrite { id, data } => Seen::Overwrite(id.to_vec(), data.to_vec()),
                Mutation::Delete { id } => Seen::Delete(id.to_vec()),
                Mutation::ExpirationSet { id, expiration } => {
                    Seen::ExpirationSet(id.to_vec(), expiration)
                }
                other => panic!("unexpected change {other:?}"),
            };
            assert!(!c.staged);
            out.push((c.seq, c.version, seen));
        }
        out
    }

    #[test]
    fn a_watcher_sees_every_change_in_commit_order_with_data_and_versions() {
        let (_d, s) = service();
        let active = create(&s, &attrs(4, 64));
        let standby = s.open(NAME, OpenFlags::READ, None).unwrap();
        let mut w = standby.watch();
        let t = after(Time::from_secs(3600));
        active.create_section(b"k", Time::END, b"hello").unwrap();
        active.overwrite(b"k", b"HELLO").unwrap();
        active
            .write(&[WriteVec {
                id: b"k",
                offset: 5,
                data: b" world",
            }])
            .unwrap();
        active.set_expiration(b"k", t).unwrap();
        active.delete_section(b"k").unwrap();
        let changes = drain(&mut w);
        let what: Vec<_> = changes.iter().map(|(_, v, s)| (*v, s.clone())).collect();
        assert_eq!(
            what,
            [
                (1, Seen::Create(b"k".to_vec(), Time::END, b"hello".to_vec())),
                (2, Seen::Overwrite(b"k".to_vec(), b"HELLO".to_vec())),
                (3, Seen::Write(b"k".to_vec(), 5, b" world".to_vec())),
                (3, Seen::ExpirationSet(b"k".to_vec(), t)),
                (3, Seen::Delete(b"k".to_vec())),
            ]
        );
        // Sequence numbers are dense: +1 per change, after the creation (1)
        // and the active replica's setting (2).
        let seqs: Vec<_> = changes.iter().map(|(q, _, _)| *q).collect();
        assert_eq!(seqs, [3, 4, 5, 6, 7]);
        assert!(w.next_change().unwrap().is_none());
    }

    #[test]
    fn a_watcher_starts_at_the_present_and_does_not_see_older_changes() {
        let (_d, s) = service();
        let c = create(&s, &attrs(4, 64));
        c.create_section(b"old", Time::END, b"x").unwrap();
        let mut w = c.watch();
        assert!(w.next_change().unwrap().is_none());
        c.create_section(b"new", Time::END, b"y").unwrap();
        let changes = drain(&mut w);
        assert_eq!(changes.len(), 1);
        assert_eq!(
            changes[0].2,
            Seen::Create(b"new".to_vec(), Time::END, b"y".to_vec())
        );
    }

    #[test]
    fn section_handle_writes_and_expiry_sweeps_are_logged_too() {
        let (_d, s) = service();
        let c = create(&s, &attrs(4, 64));
        let mut w = c.watch();
        let k = c.create_section(b"k", Time::END, b"ab").unwrap();
        k.write_at(2, b"cd").unwrap();
        k.overwrite_with(3, |b| b.copy_from_slice(b"xyz")).unwrap();
        c.create_section(b"dead", Time(1), b"").unwrap();
        c.status().unwrap(); // sweeps `dead`
        let what: Vec<_> = drain(&mut w).into_iter().map(|(_, v, s)| (v, s)).collect();
        assert_eq!(
            what,
            [
                (1, Seen::Create(b"k".to_vec(), Time::END, b"ab".to_vec())),
                (2, Seen::Write(b"k".to_vec(), 2, b"cd".to_vec())),
                (3, Seen::Overwrite(b"k".to_vec(), b"xyz".to_vec())),
                (1, Seen::Create(b"dead".to_vec(), Time(1), Vec::new())),
                (1, Seen::Delete(b"dead".to_vec())),
            ]
        );
    }

    #[test]
    fn failed_operations_log_nothing() {
        let (_d, s) = service();
        let c = create(&s, &attrs(2, 16));
        c.create_section(b"k", Time::END, b"v").unwrap();
        let mut w = c.watch();
        let _ = c.create_section(b"k", Time::END, b"dup");
        let _ = c.overwrite(b"k", &[0; 17]);
        let _ = c.write(&[
            WriteVec {
                id: b"k",
                offset: 0,
                data: b"x",
            },
            WriteVec {
                id: b"missing",
                offset: 0,
                data: b"y",
            },
        ]);
        let _ = c.delete_section(b"missing");
        assert!(drain(&mut w).is_empty());
        assert!(!w.wait(Duration::from_millis(1), Duration::ZERO));
    }

    #[test]
    fn wait_returns_true_when_a_change_is_pending_and_false_after_its_timeout_when_none() {
        let (_d, s) = service();
        let c = create(&s, &attrs(4, 64));
        let mut w = c.watch();
        let start = Instant::now();
        assert!(!w.wait(Duration::from_millis(50), Duration::from_micros(100)));
        assert!(start.elapsed() >= Duration::from_millis(50));
        c.create_section(b"k", Time::END, b"v").unwrap();
        assert!(w.wait(Duration::from_millis(50), Duration::ZERO));
        assert!(w.wait(Duration::ZERO, Duration::ZERO), "still pending");
        assert_eq!(drain(&mut w).len(), 1);
        assert!(!w.wait(Duration::from_millis(10), Duration::ZERO));
    }

    #[test]
    fn wait_wakes_up_when_another_thread_writes() {
        let (_d, s) = service();
        let c = create(&s, &attrs(4, 64));
        c.create_section(b"k", Time::END, b"0").unwrap();
        let mut w = c.watch();
        std::thread::scope(|scope| {
            let s2 = s.clone();
            scope.spawn(move || {
                let writer = s2.open(NAME, OpenFlags::WRITE, None).unwrap();
                std::thread::sleep(Duration::from_millis(50));
                writer.overwrite(b"k", b"1").unwrap();
            });
            let start = Instant::now();
            assert!(w.wait(Duration::from_secs(10), Duration::from_micros(50)));
            assert!(start.elapsed() < Duration::from_secs(5));
        });
        let changes = drain(&mut w);
        assert_eq!(changes[0].2, Seen::Overwrite(b"k".to_vec(), b"1".to_vec()));
    }

    #[test]
    fn a_watcher_that_falls_behind_the_log_ring_gets_lagged_and_can_resync() {
        let dir = tempfile::tempdir().unwrap();
        let s = Service::with_config(Config {
            log_bytes: Some(65536),
            ..Config::with_dir(dir.path())
        });
        let c = create(&s, &attrs(4, 1024));
        let k = c.create_section(b"k", Time::END, b"").unwrap();
        let mut w = c.watch();
        // 200 frames of more than 512 bytes: well over the 64 KiB ring.
        for i in 0..200u32 {
            k.overwrite(&[i as u8; 512]).unwrap();
        }
        let lagged = w.next_change();
        let Err(WatchError::Lagged { oldest }) = lagged else {
            panic!("expected Lagged, got {lagged:?}");
        };
        assert!(oldest > 0);
        // Resynchronize: a snapshot of the sections, and nothing it holds again.
        let snapshot = w.resync().unwrap();
        assert_eq!(snapshot.section(b"k").unwrap().data, [199u8; 512]);
        assert_eq!(snapshot.section(b"k").unwrap().version, 201);
        assert!(w.next_change().unwrap().is_none());
        k.overwrite(b"after").unwrap();
        let changes = drain(&mut w);
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].1, 202);
        assert_eq!(
            changes[0].2,
            Seen::Overwrite(b"k".to_vec(), b"after".to_vec())
        );
    }

    #[test]
    fn a_change_too_large_for_one_frame_is_reported_staged_with_its_last_piece() {
        let dir = tempfile::tempdir().unwrap();
        let s = Service::with_config(Config {
            log_bytes: Some(65536),
            ..Config::with_dir(dir.path())
        });
        let c = create(&s, &attrs(2, 32 * 1024));
        let k = c.create_section(b"k", Time::END, b"").unwrap();
        let mut w = c.watch();
        k.overwrite(&[7; 32 * 1024]).unwrap();
        let change = w.next_change().unwrap().unwrap();
        assert!(change.staged);
        assert_eq!(change.version, 2);
        match change.mutation {
            Mutation::Overwrite { id, data } => {
                assert_eq!(id, b"k");
                assert!(!data.is_empty() && data.len() < 32 * 1024);
                assert!(data.iter().all(|&b| b == 7));
            }
            other => panic!("unexpected {other:?}"),
        }
        // The section itself has the data.
        assert_eq!(c.read_section(b"k").unwrap(), vec![7; 32 * 1024]);
    }
}

// ---------------------------------------------------------------------------
// The error codes themselves (saAis.h values the C library returns)
// ---------------------------------------------------------------------------

#[test]
fn error_codes_have_the_sa_ais_h_values() {
    let codes = [
        (AisError::Library, 2),
        (AisError::TryAgain, 6),
        (AisError::InvalidParam, 7),
        (AisError::Access, 11),
        (AisError::NotExist, 12),
        (AisError::Exist, 14),
        (AisError::NoSpace, 15),
        (AisError::NoResources, 18),
        (AisError::BadOperation, 20),
        (AisError::BadFlags, 25),
        (AisError::NoSections, 27),
    ];
    for (e, code) in codes {
        assert_eq!(e.code(), code, "{e:?}");
    }
}

mod long_vectors {
    use super::*;

    /// Vectors longer than the eight elements resolved on the stack take the
    /// same path semantics: in order, all or nothing, the first failing index.
    #[test]
    fn a_twenty_element_write_applies_in_order_or_not_at_all() {
        let (_dir, service) = service();
        let ckpt = create(&service, &attrs(4, 64));
        ckpt.create_section(b"k", Time::END, b"").unwrap();
        let bytes: Vec<[u8; 1]> = (0..20u8).map(|i| [b'a' + i]).collect();
        let vector: Vec<WriteVec<'_>> = (0..20)
            .map(|i| WriteVec {
                id: b"k",
                offset: i as u64,
                data: &bytes[i],
            })
            .collect();
        ckpt.write(&vector).unwrap();
        assert_eq!(ckpt.read_section(b"k").unwrap(), b"abcdefghijklmnopqrst");
        let mut failing = vector.clone();
        failing[15] = WriteVec {
            id: b"missing",
            offset: 0,
            data: b"x",
        };
        failing[0] = WriteVec {
            id: b"k",
            offset: 0,
            data: b"Z",
        };
        assert_eq!(err(ckpt.write(&failing)), (15, WriteError::NotExist));
        assert_eq!(
            ckpt.read_section(b"k").unwrap(),
            b"abcdefghijklmnopqrst",
            "nothing written"
        );
    }
}

#[test]
fn a_long_vector_write_sees_each_section_as_the_earlier_elements_leave_it() {
    let (_dir, service) = service();
    let c = service
        .open(NAME, rwc(), Some(&CreationAttributes::new(4, 4096)))
        .unwrap();
    c.set_active_replica().unwrap();
    c.create_section(b"a", Time::END, b"").unwrap();
    c.create_section(b"b", Time::END, b"").unwrap();
    // 100 elements (past the short vectors' scan), alternating sections,
    // each appending one byte where the earlier ones left the section's end.
    let bytes: Vec<u8> = (0..100u8).collect();
    let appends: Vec<WriteVec> = (0..100usize)
        .map(|i| WriteVec {
            id: if i % 2 == 0 { b"a" } else { b"b" },
            offset: (i / 2) as u64,
            data: &bytes[i..i + 1],
        })
        .collect();
    c.write(&appends).unwrap();
    let evens: Vec<u8> = (0..100u8).step_by(2).collect();
    let odds: Vec<u8> = (1..100u8).step_by(2).collect();
    assert_eq!(c.read_section(b"a").unwrap(), evens);
    assert_eq!(c.read_section(b"b").unwrap(), odds);
    // An element past maxSectionSize fails with its index, and nothing of
    // the vector is made.
    let mut more: Vec<WriteVec> = (0..40usize)
        .map(|i| WriteVec {
            id: b"a",
            offset: (50 + i) as u64,
            data: b"x",
        })
        .collect();
    more.push(WriteVec {
        id: b"a",
        offset: 4096,
        data: b"!",
    });
    assert_eq!(c.write(&more), Err((40, WriteError::TooLarge)));
    assert_eq!(c.read_section(b"a").unwrap(), evens);
    // One past the end the earlier elements leave (90 bytes) leaves a hole.
    more.pop();
    more.push(WriteVec {
        id: b"a",
        offset: 91,
        data: b"!",
    });
    c.write(&more).unwrap();
    let a = c.read_section(b"a").unwrap();
    assert_eq!((a.len(), a[89], a[90], a[91]), (92, b'x', 0, b'!'));
}
