//! `frame::decode_message` on arbitrary bytes (what a peer daemon sends): it
//! never panics, it never accepts more than the limit, and whatever it
//! accepts is exactly what `frame::encode_message` produces for the decoded
//! message followed by the carried frames, so the two ends of a replication
//! link can never disagree about a message's meaning.
//!
//! The input's first byte picks how the rest is used: as one raw message,
//! or (for a CRC a fuzzer would take long to guess) as the fields of a
//! message that is encoded first and then damaged at one byte.

#![no_main]

use ckpt_core::frame::{self, decode_message, encode_message, FrameHeader, FrameKind};
use ckpt_core::repl::{Message, Position};
use libfuzzer_sys::fuzz_target;

const LIMIT: usize = 1 << 16;

fn check(bytes: &[u8]) {
    let Ok((m, n)) = decode_message(bytes, LIMIT) else {
        return;
    };
    assert!(n <= LIMIT && n <= bytes.len() && n % 8 == 0);
    let mut out = vec![0u8; LIMIT];
    let own = encode_message(m.link, &m.message, m.name, m.frames.len(), &mut out)
        .expect("an accepted message re-encodes");
    out.truncate(own);
    out.extend_from_slice(m.frames);
    assert_eq!(&out[..], &bytes[..n], "decode and encode disagree");
}

/// Frames `first..first + count`, sealed, from fuzz bytes.
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
        frame::seal(&mut buf);
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
    let (message, name, carried) = match mode / 2 % 5 {
        0 => (
            Message::Subscribe {
                incarnation: a,
                holds,
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
            };
            (
                m,
                &[][..],
                frames(first, count, &tail[..tail.len().min(32)]),
            )
        }
        2 => (
            Message::Snapshot {
                incarnation: a,
                start: b,
                term: c as u32,
            },
            &[][..],
            Vec::new(),
        ),
        3 => (Message::Ack { holds }, &[][..], Vec::new()),
        _ => (Message::Heartbeat, &[][..], Vec::new()),
    };
    let mut bytes = vec![0u8; 40 + 64 + 8];
    let Ok(own) = encode_message((c >> 32) as u32, &message, name, carried.len(), &mut bytes)
    else {
        return;
    };
    bytes.truncate(own);
    bytes.extend_from_slice(&carried);
    let (m, n) = decode_message(&bytes, LIMIT).expect("an encoded message decodes");
    assert_eq!(
        (m.message, m.name, m.frames, n),
        (message, name, &carried[..], bytes.len())
    );
    if let Some(&at) = tail.first() {
        let i = at as usize % bytes.len();
        bytes[i] ^= tail.get(1).copied().unwrap_or(1).max(1);
    }
    check(&bytes);
});
