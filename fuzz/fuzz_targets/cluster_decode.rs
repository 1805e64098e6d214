//! `cluster::decode` on arbitrary bytes (what a peer daemon multicasts
//! through corosync CPG): it never panics, and whatever it accepts encodes
//! back to exactly the same bytes, so two daemons never disagree about a
//! message's meaning.
//!
//! The input's first byte picks how the rest is used: as one raw message,
//! or (for a CRC a fuzzer would take long to guess) as the fields of a
//! report that is encoded first and then damaged at one byte.

#![no_main]

use ckpt_core::cluster::{
    decode, encode_hello, encode_report, Answering, ClusterMessage, CopyState,
};
use libfuzzer_sys::fuzz_target;

fn check(bytes: &[u8]) {
    let Ok(m) = decode(bytes) else {
        return;
    };
    let again = match &m {
        ClusterMessage::Hello(h) => encode_hello(h),
        ClusterMessage::Report(r) => {
            let to = Answering {
                to: r.to,
                to_seq: r.to_seq,
            };
            let mut parts = encode_report(r.node, to, &r.copies);
            assert_eq!(parts.len(), 1, "an accepted part re-encodes as one part");
            let mut p = parts.remove(0);
            // The part's number and its last and cut flags are the
            // caller's, not the copies' (bytes 22..26).
            p[22..26].copy_from_slice(&bytes[22..26]);
            let n = p.len() - 4;
            let crc = crc32c::crc32c(&p[..n]).to_le_bytes();
            p[n..].copy_from_slice(&crc);
            p
        }
    };
    assert_eq!(again, bytes, "an accepted message re-encodes to its bytes");
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        return check(rest);
    }
    // Copies from the input: 12 bytes of fields, a name length byte, a name.
    let mut copies = Vec::new();
    let mut r = rest;
    while r.len() >= 13 && copies.len() < 120 {
        let len = usize::from(r[12]);
        let Some(name) = r.get(13..13 + len) else {
            break;
        };
        copies.push(CopyState {
            name: name.to_vec(),
            incarnation: u64::from_le_bytes(r[..8].try_into().unwrap()),
            term: u32::from_le_bytes(r[8..12].try_into().unwrap()),
            primary: len % 2 == 0,
            seq: u64::from(r[8]) << 40 | len as u64,
            diverged: len % 3 == 0,
        });
        r = &r[13 + len..];
    }
    let to = Answering {
        to: 3,
        to_seq: u64::from(mode),
    };
    for mut part in encode_report(u32::from(mode >> 1), to, &copies) {
        check(&part);
        if !part.is_empty() {
            let at = usize::from(mode) * 7 % part.len();
            part[at] ^= mode | 1;
            check(&part);
        }
    }
});
