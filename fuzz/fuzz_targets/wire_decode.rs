//! `frame::decode_message` on arbitrary bytes (what a peer daemon sends): it
//! never panics, it never accepts more than the limit, and whatever it
//! accepts is exactly what `frame::encode_message` produces for the decoded
//! message followed by its body (carried frames, a snapshot's creation
//! frame, section records, a snapshot's tail; the challenge or answer of an
//! authentication travels in the header's body), so the two ends of a
//! replication link can never disagree about a message's meaning; the
//! records it accepts read back whole. A sealed envelope's header
//! (`open_sealed`) is checked the same way.
//!
//! The input's first byte picks how the rest is used: as one raw message,
//! or (for a CRC a fuzzer would take long to guess) as the fields of a
//! message that is encoded first and then damaged at one byte.

#![no_main]

use ckpt_core::frame::{
    self, decode_message, encode_message, FrameHeader, FrameKind, SectionRecord, SnapshotTail,
};
use ckpt_core::repl::{Message, Position};
use libfuzzer_sys::fuzz_target;

const LIMIT: usize = 1 << 16;

fn check(bytes: &[u8]) {
    // A sealed envelope's header: accepted ones re-encode to the same
    // header, and the parts tile the message.
    if let Ok(p) = frame::open_sealed(bytes, LIMIT) {
        let inner = p.ciphertext.len();
        let link = u32::from_le_bytes(bytes[12..16].try_into().expect("4 bytes"));
        let h =
            frame::seal_header(link, p.counter, inner).expect("an accepted envelope re-encodes");
        assert_eq!(&h[..], &bytes[..40], "sealed header round trip");
        assert_eq!(
            40 + inner + p.tag.len(),
            frame::message_bytes(bytes).unwrap()
        );
    }
    let Ok((m, n)) = decode_message(bytes, LIMIT) else {
        return;
    };
    assert!(n <= LIMIT && n <= bytes.len() && n % 8 == 0);
    let tail = m.tail.map(|t| t.to_bytes());
    let body: &[u8] = match &tail {
        Some(t) => t,
        None if !m.records.is_empty() => m.records,
        None => m.frames,
    };
    let mut out = vec![0u8; LIMIT];
    let own = encode_message(m.link, &m.message, m.name, body, &mut out)
        .expect("an accepted message re-encodes");
    out.truncate(own);
    out.extend_from_slice(body);
    assert_eq!(&out[..], &bytes[..n], "decode and encode disagree");
    // Every accepted record reads back, and re-encodes to the same bytes.
    let mut again = Vec::new();
    for r in frame::records(m.records) {
        assert!(r.offset + r.piece.len() as u64 <= r.size);
        frame::encode_record(&r, &mut again);
    }
    assert_eq!(&again[..], m.records, "records read back whole");
}

/// A creation frame of `incarnation`, sealed.
fn created(incarnation: u64) -> Vec<u8> {
    let attrs = frame::encode_created(&ckpt_core::CreationAttributes::new(4, 100), 1 << 20);
    let h = FrameHeader {
        seq: 1,
        term: 1,
        incarnation,
        id_len: 1,
        data_len: attrs.len() as u32,
        ..FrameHeader::new(FrameKind::CheckpointCreated)
    };
    let mut buf = vec![0u8; h.frame_bytes()];
    frame::encode(&h, b"n", &attrs, &mut buf).expect("a frame encodes");
    frame::seal(&mut buf);
    buf
}

/// Frames `first..first + count` from fuzz bytes, unsealed (as a `Frames`
/// message carries them, under its own checksum).
fn frames(first: u64, count: u8, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..count as u64 {
        let h = FrameHeader {
            seq: first + i,
            term: 2,
            incarnation: 9,
            version: 1 + i,
            time_ns: 1_700_000_000_000_000_000,
            id_len: 1,
            data_len: data.len() as u32,
            ..FrameHeader::new(FrameKind::Overwrite)
        };
        let mut buf = vec![0u8; h.frame_bytes()];
        frame::encode(&h, b"k", data, &mut buf).expect("a frame encodes");
        out.extend_from_slice(&buf);
    }
    out
}

fuzz_target!(|input: &[u8]| {
    let Some((&mode, rest)) = input.split_first() else {
        return;
    };
    if mode % 2 == 0 || rest.len() < 24 {
        return check(rest);
    }
    // Fields, encoded, then one byte damaged (or none).
    let word = |i: usize| u64::from_le_bytes(rest[i * 8..i * 8 + 8].try_into().unwrap());
    let (a, b, c) = (word(0), word(1), word(2));
    let tail = &rest[24..];
    let holds = Position {
        seq: b,
        term: c as u32,
    };
    let (message, name, carried) = match mode / 2 % 6 {
        0 if c % 2 == 0 => (
            Message::Subscribe {
                incarnation: a,
                holds,
            },
            &tail[..tail.len().min(64)],
            Vec::new(),
        ),
        0 => (
            Message::Offer {
                incarnation: a,
                term: b as u32,
                node: (c >> 32) as u32,
                placed: b >> 32 & 1 == 1,
                written: b >> 33 & 1 == 1,
            },
            &tail[..tail.len().min(64)],
            Vec::new(),
        ),
        1 => {
            let first = a % 1000 + 1;
            let count = (c % 4) as u8 + 1;
            let m = Message::Frames {
                first,
                last: first + count as u64 - 1,
                prev_term: b as u32,
                behind: (b >> 32) as u32,
            };
            (
                m,
                &[][..],
                frames(first, count, &tail[..tail.len().min(32)]),
            )
        }
        2 => match c % 3 {
            0 => (Message::Snapshot { incarnation: a }, &[][..], created(a)),
            1 => {
                let data = &tail[..tail.len().min(48)];
                let mut records = Vec::new();
                let r = SectionRecord {
                    id: &data[..data.len().min(5)],
                    piece: data,
                    size: data.len() as u64 + b % 64,
                    offset: b % 64,
                    version: a | 1,
                    last_update: a as i64,
                    expiration: b as i64,
                    data_seq: a,
                    expiration_seq: b,
                };
                frame::encode_record(&r, &mut records);
                (Message::SnapshotPart { records: 1 }, &[][..], records)
            }
            _ => {
                let t = SnapshotTail {
                    end_seq: a,
                    state_seq: b,
                    active: (c % 5 > 0).then_some((c >> 8) as u32 % 1000),
                    term: (c >> 40) as u32 | 1,
                    retention_ns: (a >> 1) as i64,
                    unlinked: c & 1 == 1,
                };
                let m = Message::SnapshotEnd {
                    start: holds,
                    sections: a,
                };
                (m, &[][..], t.to_bytes().to_vec())
            }
        },
        3 => (
            Message::Ack {
                holds,
                openers: (c >> 32) as u32,
            },
            &[][..],
            Vec::new(),
        ),
        4 => {
            let mut bytes = [0u8; 32];
            for (i, b) in bytes.iter_mut().enumerate() {
                *b = (a >> (i % 8 * 8)) as u8 ^ i as u8;
            }
            let m = if c % 2 == 0 {
                Message::Hello { nonce: bytes }
            } else {
                Message::Proof { mac: bytes }
            };
            (m, &[][..], Vec::new())
        }
        _ => match ckpt_core::repl::CloseReason::from_code((c % 6) as u32) {
            Some(reason) => (Message::Closing { reason }, &[][..], Vec::new()),
            None => (Message::Heartbeat, &[][..], Vec::new()),
        },
    };
    let mut bytes = vec![0u8; 40 + 64 + 8];
    let Ok(own) = encode_message((c >> 32) as u32, &message, name, &carried, &mut bytes) else {
        return;
    };
    bytes.truncate(own);
    bytes.extend_from_slice(&carried);
    let (m, n) = decode_message(&bytes, LIMIT).expect("an encoded message decodes");
    let body = match message {
        Message::SnapshotPart { .. } => m.records,
        Message::SnapshotEnd { .. } => &carried[..],
        _ => m.frames,
    };
    assert_eq!(
        (m.message, m.name, body, n),
        (message, name, &carried[..], bytes.len())
    );
    if let Message::SnapshotEnd { .. } = message {
        assert_eq!(m.tail.map(|t| t.to_bytes().to_vec()), Some(carried.clone()));
    }
    if let Some(&at) = tail.first() {
        let i = at as usize % bytes.len();
        bytes[i] ^= tail.get(1).copied().unwrap_or(1).max(1);
    }
    check(&bytes);
});
