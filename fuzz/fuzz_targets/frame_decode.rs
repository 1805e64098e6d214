//! `frame::decode` on arbitrary bytes: it never panics, and whatever it accepts
//! is exactly what `frame::encode` (+ `seal`) produces for the decoded frame,
//! so a replica and the log ring can never disagree about a frame's bytes;
//! `frame::decode_checked` never panics either and reads what `decode`
//! accepts as `decode` does.
//!
//! With `CKPT_FUZZ_SEED_DIR` set, start-up writes valid frames of every kind
//! (format 2), sealed and not, into that directory as seed inputs: a fuzzer
//! would take long to guess a CRC-32C, or the 48-byte creation payload.

#![no_main]

use std::path::Path;

use ckpt_core::frame::{
    self, FrameHeader, FrameKind, Mutation, FLAG_MORE, FLAG_SEALED, FLAG_STAGED, FORMAT_VERSION,
    HEADER_BYTES,
};
use ckpt_core::{CreationAttributes, CreationFlags, UpdateMode};
use libfuzzer_sys::fuzz_target;

/// A header as the engine writes it: seq, term and incarnation set.
fn header(kind: FrameKind, id: &[u8], data: &[u8]) -> FrameHeader {
    FrameHeader {
        seq: 4096,
        term: 3,
        incarnation: 0x1234_5678_9ABC_DEF0,
        id_len: id.len() as u16,
        data_len: data.len() as u32,
        time_ns: 1_700_000_000_000_000_000,
        version: 7,
        ..FrameHeader::new(kind)
    }
}

fn write_seeds(dir: &Path) {
    std::fs::create_dir_all(dir).expect("create seed directory");
    let write = |name: &str, bytes: &[u8]| {
        std::fs::write(dir.join(format!("seed-{name}")), bytes).expect("write seed");
        let mut sealed = bytes.to_vec();
        frame::seal(&mut sealed);
        std::fs::write(dir.join(format!("seed-{name}-sealed")), sealed).expect("write seed");
    };
    let encode = |name: &str, h: FrameHeader, id: &[u8], data: &[u8]| {
        let mut buf = vec![0u8; h.frame_bytes()];
        frame::encode(&h, id, data, &mut buf).expect("encode seed");
        assert!(
            frame::decode(&buf, false).is_ok(),
            "seed {name} does not decode"
        );
        write(name, &buf);
    };

    // Section kinds, each with the fields its kind allows.
    encode(
        "Create",
        FrameHeader {
            arg: i64::MAX,
            version: 1,
            ..header(FrameKind::Create, b"id", b"data")
        },
        b"id",
        b"data",
    );
    encode(
        "Write",
        FrameHeader {
            arg: 100,
            ..header(FrameKind::Write, b"id", b"data")
        },
        b"id",
        b"data",
    );
    encode(
        "Overwrite",
        header(FrameKind::Overwrite, b"id", b"data"),
        b"id",
        b"data",
    );
    encode("Delete", header(FrameKind::Delete, b"id", b""), b"id", b"");
    encode(
        "ExpirationSet",
        FrameHeader {
            arg: 4_102_444_800_000_000_000,
            ..header(FrameKind::ExpirationSet, b"id", b"")
        },
        b"id",
        b"",
    );
    // One element of a vector write: more frames of the same call follow.
    encode(
        "Write-more",
        FrameHeader {
            flags: FLAG_MORE,
            arg: 3,
            ..header(FrameKind::Write, b"id", b"abc")
        },
        b"id",
        b"abc",
    );
    // Large data: a Stage piece (always FLAG_MORE) and the mutation's own
    // frame carrying the last piece (FLAG_STAGED), for each stageable kind.
    encode(
        "Stage",
        FrameHeader {
            flags: FLAG_MORE,
            arg: 16_312,
            ..header(FrameKind::Stage, b"id", b"piece")
        },
        b"id",
        b"piece",
    );
    for kind in [FrameKind::Create, FrameKind::Write, FrameKind::Overwrite] {
        encode(
            &format!("{kind:?}-staged"),
            FrameHeader {
                flags: FLAG_STAGED,
                arg: if kind == FrameKind::Write { 8 } else { 0 },
                ..header(kind, b"id", b"tail")
            },
            b"id",
            b"tail",
        );
    }
    encode(
        "Write-staged-more",
        FrameHeader {
            flags: FLAG_STAGED | FLAG_MORE,
            ..header(FrameKind::Write, b"id", b"tail")
        },
        b"id",
        b"tail",
    );
    encode(
        "StageAbort",
        FrameHeader {
            version: 0,
            ..header(FrameKind::StageAbort, b"id", b"")
        },
        b"id",
        b"",
    );

    // Checkpoint-wide kinds.
    let attrs = CreationAttributes {
        flags: CreationFlags::new(UpdateMode::ActiveReplicaWeak, false),
        retention_ns: 5_000_000_000,
        section_id_bytes_max: 8,
        ..CreationAttributes::new(4, 100)
    };
    let payload = frame::encode_created(&attrs, 1 << 20);
    encode(
        "CheckpointCreated",
        FrameHeader {
            seq: 1,
            term: 1,
            version: 0,
            ..header(FrameKind::CheckpointCreated, b"name", &payload)
        },
        b"name",
        &payload,
    );
    // A non-collocated asynchronous checkpoint names the node placed as its
    // active replica at creation (arg = node + 1).
    encode(
        "CheckpointCreated-placed",
        FrameHeader {
            seq: 1,
            term: 1,
            version: 0,
            arg: 8,
            ..header(FrameKind::CheckpointCreated, b"name", &payload)
        },
        b"name",
        &payload,
    );
    encode(
        "ActiveReplicaSet",
        FrameHeader {
            arg: frame::NODE_ID_MAX as i64,
            version: 0,
            term: 4,
            ..header(FrameKind::ActiveReplicaSet, b"", b"")
        },
        b"",
        b"",
    );
    encode(
        "RetentionSet",
        FrameHeader {
            arg: 60_000_000_000,
            version: 0,
            ..header(FrameKind::RetentionSet, b"", b"")
        },
        b"",
        b"",
    );
    encode(
        "Unlink",
        FrameHeader {
            version: 0,
            ..header(FrameKind::Unlink, b"", b"")
        },
        b"",
        b"",
    );

    // The ring writes a pad's header only; its filler is stale ring bytes.
    let mut pad = vec![0xEEu8; 128];
    pad[..HEADER_BYTES].copy_from_slice(&FrameHeader::pad(128).to_bytes());
    write("pad", &pad);
}

/// The property, for one input.
fn check(data: &[u8]) {
    let relaxed = frame::decode(data, false);
    // The reading of a checked frame (a received message's, read again to
    // apply it) never panics, and gives exactly what `decode` gives.
    let read = frame::decode_checked(data);
    if let Ok(f) = &relaxed {
        assert_eq!(read.as_ref(), Some(f), "decode_checked differs from decode");
    }
    // A seal is verified whether or not it is required, so requiring one only
    // adds `Unsealed` (for frames whose header decodes and that are unsealed).
    match frame::decode(data, true) {
        Err(frame::DecodeError::Unsealed) => assert_eq!(data[17] & FLAG_SEALED, 0),
        strict => assert_eq!(
            strict, relaxed,
            "require_seal changed more than the seal check"
        ),
    }
    let Ok(f) = relaxed else { return };

    let h = f.header;
    let bytes = h.frame_bytes();
    assert!(bytes >= HEADER_BYTES && bytes % frame::FRAME_ALIGN == 0 && bytes <= data.len());
    assert_eq!(data[24], FORMAT_VERSION);
    assert_eq!(frame::decode_header(data), Ok(h));
    assert_eq!(f.id.len(), h.id_len as usize);
    let pad = h.kind == FrameKind::Pad;
    assert_eq!(f.data.len(), if pad { 0 } else { h.data_len as usize });
    if !h.kind.carries_data() {
        assert!(f.data.is_empty(), "{:?} carries data", h.kind);
    }
    // Pads alone have no sequence number; stages always announce more; only
    // the stageable kinds may be staged.
    assert_eq!(h.seq == 0, pad);
    assert!(h.kind != FrameKind::Stage || f.has_more());
    assert!(!f.is_staged() || h.kind.may_be_staged());
    match f.mutation() {
        None => assert!(pad),
        Some(Mutation::CheckpointCreated {
            name,
            attributes,
            log_bytes,
            active_replica,
        }) => {
            assert_eq!(name, f.id);
            assert_eq!(active_replica.map_or(0, |n| n as i64 + 1), h.arg);
            assert_eq!(
                frame::encode_created(&attributes, log_bytes),
                f.data,
                "the creation payload does not round-trip"
            );
            assert!(!f.has_more());
        }
        Some(Mutation::ActiveReplicaSet { node, term }) => {
            assert_eq!((node as i64, term), (h.arg, h.term));
        }
        Some(_) => assert!(!pad),
    }

    let mut out = vec![0xA5u8; bytes];
    let n = frame::encode(&h, f.id, f.data, &mut out).expect("a decoded frame must re-encode");
    assert_eq!(n, bytes);
    if pad {
        // A pad's filler is whatever the ring held before; it carries nothing.
        out[HEADER_BYTES..].copy_from_slice(&data[HEADER_BYTES..bytes]);
    }
    if h.flags & FLAG_SEALED != 0 {
        frame::seal(&mut out);
    }
    assert_eq!(
        out,
        &data[..bytes],
        "decode accepted bytes encode would not produce"
    );
}

fuzz_target!(
    init: {
        if let Some(dir) = std::env::var_os("CKPT_FUZZ_SEED_DIR") {
            write_seeds(Path::new(&dir));
        }
    },
    |data: &[u8]| check(data)
);
