//! `frame::decode` on arbitrary bytes: it never panics, and whatever it accepts
//! is exactly what `frame::encode` (+ `seal`) produces for the decoded frame,
//! so a replica and the log ring can never disagree about a frame's bytes.
//!
//! With `CKPT_FUZZ_SEED_DIR` set, start-up writes valid frames of every kind,
//! sealed and not, into that directory as seed inputs: a fuzzer would take
//! long to guess a CRC-32C.

#![no_main]

use std::path::Path;

use ckpt_core::frame::{self, FrameHeader, FrameKind, FLAG_DATA_ELIDED, FLAG_SEALED, HEADER_BYTES};
use libfuzzer_sys::fuzz_target;

fn write_seeds(dir: &Path) {
    std::fs::create_dir_all(dir).expect("create seed directory");
    let write = |name: &str, bytes: &[u8]| {
        std::fs::write(dir.join(format!("seed-{name}")), bytes).expect("write seed");
        let mut sealed = bytes.to_vec();
        frame::seal(&mut sealed);
        std::fs::write(dir.join(format!("seed-{name}-sealed")), sealed).expect("write seed");
    };
    let kinds = [
        FrameKind::Create,
        FrameKind::Write,
        FrameKind::Overwrite,
        FrameKind::Delete,
        FrameKind::ExpirationSet,
    ];
    for kind in kinds {
        let data: &[u8] = match kind {
            FrameKind::Delete | FrameKind::ExpirationSet => b"",
            _ => b"data",
        };
        let header = FrameHeader {
            kind,
            flags: 0,
            lsn: 4096,
            id_len: 2,
            data_len: data.len() as u32,
            time_ns: 1,
            arg: 3,
            version: 7,
        };
        let mut buf = vec![0u8; header.frame_bytes()];
        frame::encode(&header, b"id", data, &mut buf).expect("encode seed");
        write(&format!("{kind:?}"), &buf);
    }
    let elided = FrameHeader {
        kind: FrameKind::Overwrite,
        flags: FLAG_DATA_ELIDED,
        lsn: 0,
        id_len: 1,
        data_len: 1 << 20,
        time_ns: 1,
        arg: 0,
        version: 2,
    };
    let mut buf = vec![0u8; elided.frame_bytes()];
    frame::encode(&elided, b"s", b"", &mut buf).expect("encode seed");
    write("elided", &buf);
    // The ring writes a pad's header only; its filler is stale ring bytes.
    let mut pad = vec![0xEEu8; 64];
    pad[..HEADER_BYTES].copy_from_slice(&FrameHeader::pad(8, 64).to_bytes());
    write("pad", &pad);
}

/// The property, for one input.
fn check(data: &[u8]) {
    let relaxed = frame::decode(data, false);
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
    assert_eq!(frame::decode_header(data), Ok(h));
    assert_eq!(f.id.len(), h.id_len as usize);
    let carries_data = h.flags & FLAG_DATA_ELIDED == 0 && h.kind != FrameKind::Pad;
    assert_eq!(
        f.data.len(),
        if carries_data { h.data_len as usize } else { 0 }
    );
    assert_eq!(f.mutation().is_none(), h.kind == FrameKind::Pad);

    let mut out = vec![0xA5u8; bytes];
    let n = frame::encode(&h, f.id, f.data, &mut out).expect("a decoded frame must re-encode");
    assert_eq!(n, bytes);
    if h.kind == FrameKind::Pad {
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
