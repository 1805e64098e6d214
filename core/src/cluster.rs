//! What node daemons say to each other through the cluster engine's group
//! messaging (corosync CPG), and the rule a fenced node follows once its
//! partition regains quorum. The byte format is defined here, once.
//!
//! - A [`Hello`]: a daemon's node id and where its replication listener
//!   is (so peers need not be configured by hand), with the daemon's own
//!   growing number; multicast whenever the group's members or the quorum
//!   change. A hello may *request* reports: a node that must settle fenced
//!   copies asks for them.
//! - A [`Report`]: every checkpoint copy a member holds (name, incarnation,
//!   term, primary or replica, last frame, diverged), in numbered parts, the
//!   last one marked; sent only as the answer to one request, which it
//!   names (node and number).
//!
//! A node whose partition lost quorum fenced its copies (no local writer,
//! no promotion). Once it is quorate again, it requests reports; with every
//! member's whole answer to its latest request in hand, [`settle`] decides
//! each fenced copy: a primary that another member knows a newer term of is
//! demoted (the other side promoted a replica while this one could not
//! write); a replica of a checkpoint whose active replica the service
//! chooses, with no primary left among the members, is promoted on the one
//! member that holds the most of it; otherwise the fence is lifted. An answer is fresh by
//! construction: it was made after the member received the request.
//!
//! A message: magic `CKPC`, version, kind, then the kind's fields, little
//! endian, then a CRC32C of everything before it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::frame::NODE_ID_MAX;
use crate::name::CHECKPOINT_NAME_BYTES_MAX;

/// The first bytes of every message.
pub const MAGIC: [u8; 4] = *b"CKPC";
/// The format's version.
pub const VERSION: u8 = 3;
/// The largest message either end makes or accepts.
pub const MESSAGE_BYTES_MAX: usize = 256 << 10;
/// The most copies one report part carries (a report of more is sent in
/// several parts, each under [`MESSAGE_BYTES_MAX`]).
pub const COPIES_PER_PART_MAX: usize = 100;
/// The most copies one report carries (a node holding more reports the
/// first ones, and the report says it is cut: see [`Report::cut`]).
pub const COPIES_MAX: usize = 1 << 16;

const KIND_HELLO: u8 = 1;
const KIND_REPORT: u8 = 2;
const HEAD_BYTES: usize = 6;
const CRC_BYTES: usize = 4;

/// Where a node's daemon takes replication links; maybe a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hello {
    /// The daemon's node id.
    pub node: u32,
    /// The hello's number (the daemon's own, growing).
    pub seq: u64,
    /// Every other member answers with its report.
    pub request: bool,
    /// Its replication listener.
    pub listen: SocketAddr,
}

/// One checkpoint copy a node holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyState {
    /// The checkpoint's name.
    pub name: Vec<u8>,
    /// Its incarnation.
    pub incarnation: u64,
    /// The term of what the copy holds (a primary: its current term).
    pub term: u32,
    /// A primary (true) or a replica.
    pub primary: bool,
    /// The sequence number of the last frame it holds.
    pub seq: u64,
    /// A replica that was a primary deposed by one of the same term: it
    /// counts as holding nothing until a snapshot replaces it.
    pub diverged: bool,
}

/// One part of a node's report of its copies, answering one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The reporting node.
    pub node: u32,
    /// The node whose request this answers.
    pub to: u32,
    /// The number of the hello that requested it.
    pub to_seq: u64,
    /// Its number in the report, from 0 (part 0 starts a report over).
    pub part: u16,
    /// True on the report's last part.
    pub last: bool,
    /// True if the node holds more copies than a report carries
    /// ([`COPIES_MAX`]): the report is not the whole truth.
    pub cut: bool,
    /// Copies, at most [`COPIES_PER_PART_MAX`].
    pub copies: Vec<CopyState>,
}

/// A message between daemons.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterMessage {
    /// Where a daemon listens; maybe a request.
    Hello(Hello),
    /// A part of a daemon's report.
    Report(Report),
}

/// Why bytes are not a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClusterDecodeError {
    /// Shorter than its fields say, or longer than [`MESSAGE_BYTES_MAX`].
    Length,
    /// Not `CKPC`, or another version.
    Magic,
    /// The CRC does not match.
    Checksum,
    /// A field out of its range (kind, node id, address family, name length,
    /// copy count, a flag byte), or bytes after the fields.
    Field,
}

fn put_head(out: &mut Vec<u8>, kind: u8) {
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    out.push(kind);
}

fn put_crc(out: &mut Vec<u8>) {
    let crc = crc32c::crc32c(out);
    out.extend_from_slice(&crc.to_le_bytes());
}

/// The bytes of a hello.
pub fn encode_hello(h: &Hello) -> Vec<u8> {
    let mut out = Vec::with_capacity(48);
    put_head(&mut out, KIND_HELLO);
    out.extend_from_slice(&h.node.to_le_bytes());
    out.extend_from_slice(&h.seq.to_le_bytes());
    out.push(u8::from(h.request));
    match h.listen.ip() {
        IpAddr::V4(ip) => {
            out.push(4);
            out.extend_from_slice(&ip.octets());
        }
        IpAddr::V6(ip) => {
            out.push(6);
            out.extend_from_slice(&ip.octets());
        }
    }
    out.extend_from_slice(&h.listen.port().to_le_bytes());
    put_crc(&mut out);
    out
}

/// Who a report answers: the requesting node and its hello's number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answering {
    /// The requesting node.
    pub to: u32,
    /// The requesting hello's number.
    pub to_seq: u64,
}

/// The messages of node `node`'s report of `copies`, answering `answering`:
/// as many parts as needed, numbered, the last one marked (an empty report
/// is one empty last part). Copies whose names are empty or longer than a
/// checkpoint name may be are left out; past [`COPIES_MAX`], the rest too,
/// and the report says it is cut.
pub fn encode_report(node: u32, answering: Answering, copies: &[CopyState]) -> Vec<Vec<u8>> {
    let valid: Vec<&CopyState> = copies
        .iter()
        .filter(|c| !c.name.is_empty() && c.name.len() <= CHECKPOINT_NAME_BYTES_MAX)
        .collect();
    let cut = valid.len() > COPIES_MAX;
    let valid = &valid[..valid.len().min(COPIES_MAX)];
    let head = (node, answering, cut);
    let mut parts = Vec::new();
    let mut chunks = valid.chunks(COPIES_PER_PART_MAX).peekable();
    if chunks.peek().is_none() {
        return vec![encode_part(head, 0, true, &[])];
    }
    while let Some(chunk) = chunks.next() {
        let part = parts.len() as u16;
        parts.push(encode_part(head, part, chunks.peek().is_none(), chunk));
    }
    parts
}

fn encode_part(
    head: (u32, Answering, bool),
    part: u16,
    last: bool,
    copies: &[&CopyState],
) -> Vec<u8> {
    let (node, answering, cut) = head;
    let mut out = Vec::new();
    put_head(&mut out, KIND_REPORT);
    out.extend_from_slice(&node.to_le_bytes());
    out.extend_from_slice(&answering.to.to_le_bytes());
    out.extend_from_slice(&answering.to_seq.to_le_bytes());
    out.extend_from_slice(&part.to_le_bytes());
    out.push(u8::from(last));
    out.push(u8::from(cut));
    out.extend_from_slice(&(copies.len() as u16).to_le_bytes());
    for c in copies {
        out.extend_from_slice(&c.incarnation.to_le_bytes());
        out.extend_from_slice(&c.term.to_le_bytes());
        out.extend_from_slice(&c.seq.to_le_bytes());
        out.push(u8::from(c.primary));
        out.push(u8::from(c.diverged));
        out.extend_from_slice(&(c.name.len() as u16).to_le_bytes());
        out.extend_from_slice(&c.name);
    }
    put_crc(&mut out);
    out
}

/// Reads fields front to back; every read is bounds-checked.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ClusterDecodeError> {
        let end = self.at.checked_add(n).ok_or(ClusterDecodeError::Length)?;
        let b = self
            .bytes
            .get(self.at..end)
            .ok_or(ClusterDecodeError::Length)?;
        self.at = end;
        Ok(b)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], ClusterDecodeError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn u8(&mut self) -> Result<u8, ClusterDecodeError> {
        Ok(self.take(1)?[0])
    }

    fn u64(&mut self) -> Result<u64, ClusterDecodeError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    fn flag(&mut self) -> Result<bool, ClusterDecodeError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(ClusterDecodeError::Field),
        }
    }

    fn node(&mut self) -> Result<u32, ClusterDecodeError> {
        let node = u32::from_le_bytes(self.array()?);
        if node > NODE_ID_MAX {
            return Err(ClusterDecodeError::Field);
        }
        Ok(node)
    }
}

/// Decodes one message (the whole of `bytes`).
pub fn decode(bytes: &[u8]) -> Result<ClusterMessage, ClusterDecodeError> {
    if bytes.len() > MESSAGE_BYTES_MAX || bytes.len() < HEAD_BYTES + CRC_BYTES {
        return Err(ClusterDecodeError::Length);
    }
    if bytes[..4] != MAGIC || bytes[4] != VERSION {
        return Err(ClusterDecodeError::Magic);
    }
    let (body, crc) = bytes.split_at(bytes.len() - CRC_BYTES);
    let crc = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
    if crc32c::crc32c(body) != crc {
        return Err(ClusterDecodeError::Checksum);
    }
    let mut r = Reader {
        bytes: body,
        at: HEAD_BYTES,
    };
    let message = match body[5] {
        KIND_HELLO => {
            let node = r.node()?;
            let seq = r.u64()?;
            let request = r.flag()?;
            let ip = match r.u8()? {
                4 => IpAddr::V4(Ipv4Addr::from(r.array::<4>()?)),
                6 => IpAddr::V6(Ipv6Addr::from(r.array::<16>()?)),
                _ => return Err(ClusterDecodeError::Field),
            };
            let port = u16::from_le_bytes(r.array()?);
            ClusterMessage::Hello(Hello {
                node,
                seq,
                request,
                listen: SocketAddr::new(ip, port),
            })
        }
        KIND_REPORT => {
            let node = r.node()?;
            let to = r.node()?;
            let to_seq = r.u64()?;
            let part = u16::from_le_bytes(r.array()?);
            let last = r.flag()?;
            let cut = r.flag()?;
            let count = usize::from(u16::from_le_bytes(r.array()?));
            if count > COPIES_PER_PART_MAX {
                return Err(ClusterDecodeError::Field);
            }
            let mut copies = Vec::with_capacity(count);
            for _ in 0..count {
                let incarnation = r.u64()?;
                let term = u32::from_le_bytes(r.array()?);
                let seq = r.u64()?;
                let primary = r.flag()?;
                let diverged = r.flag()?;
                let len = usize::from(u16::from_le_bytes(r.array()?));
                if len == 0 || len > CHECKPOINT_NAME_BYTES_MAX {
                    return Err(ClusterDecodeError::Field);
                }
                copies.push(CopyState {
                    name: r.take(len)?.to_vec(),
                    incarnation,
                    term,
                    primary,
                    seq,
                    diverged,
                });
            }
            ClusterMessage::Report(Report {
                node,
                to,
                to_seq,
                part,
                last,
                cut,
                copies,
            })
        }
        _ => return Err(ClusterDecodeError::Field),
    };
    if r.at != body.len() {
        return Err(ClusterDecodeError::Field);
    }
    Ok(message)
}

/// What a fenced copy becomes once its node's partition is quorate and the
/// node holds every member's report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settle {
    /// Lift the fence: nobody knows a newer history of it.
    Lift,
    /// A primary another member knows a newer term of (`term`): demote it
    /// to a replica (the newer primary's frames, or its snapshot, make it
    /// what the cluster holds), then lift the fence.
    Demote {
        /// The newest term a member reported.
        term: u32,
    },
    /// Another member holds a primary of the same incarnation in the same
    /// term (`node`): two histories under one term, which no rule here can
    /// order. The copy stays fenced for an operator to decide.
    Conflict {
        /// The other primary's node.
        node: u32,
    },
    /// A replica of a checkpoint whose active replica the service chooses
    /// (non-collocated), with no primary of its newest term left among the
    /// members, and this copy is the one that holds the most of it: lift
    /// the fence and promote it, in a new term.
    Promote,
}

/// [`Settle`] for the fenced `local` copy, given the copies the other
/// members reported (`reports`: node id and copy; those of other names are
/// ignored). A copy of another incarnation is another checkpoint that had
/// the same name: it decides nothing here.
///
/// `elect` is this node's id when the service chooses the checkpoint's
/// active replica (a non-collocated checkpoint, SA §3.1.7.2), `None` when
/// the application does (collocated). Then, if no member (this one
/// included) holds a primary of the newest term anyone holds, the members'
/// replicas that are not diverged are the candidates, and the one holding
/// the most is promoted: the newest term, then the most frames, then the
/// lowest node id. `local` is this node's copy as it reported it to the
/// members (the daemon asks again where the copy changed since), so each
/// member weighs every candidate by what it reported, made after the
/// membership change that fenced the nodes, and one node promotes; the
/// old primary, outside this quorate partition, is fenced there and demoted
/// when it comes back. (A replica that applied frames between answering two
/// members' requests may look different to each; if two then promote in
/// the same term, the equal-term rule keeps the higher node's history.)
pub fn settle<'a>(
    local: &CopyState,
    elect: Option<u32>,
    reports: impl IntoIterator<Item = (u32, &'a CopyState)>,
) -> Settle {
    use core::cmp::Reverse;
    let same = |c: &CopyState| c.name == local.name && c.incarnation == local.incarnation;
    let candidate = |c: &CopyState| !c.primary && !c.diverged;
    let mut newest = local.term;
    let mut conflict = None;
    // The newest term a primary holds, and the best candidate: the newest
    // term, then the most frames, then the lowest node (the greatest key).
    let mut newest_primary = local.primary.then_some(local.term);
    let mut best = elect
        .filter(|_| candidate(local))
        .map(|me| (local.term, local.seq, Reverse(me)));
    for (node, c) in reports {
        if !same(c) {
            continue;
        }
        newest = newest.max(c.term);
        if c.primary {
            newest_primary = newest_primary.max(Some(c.term));
            if local.primary && c.term == local.term {
                conflict = Some(node);
            }
        } else if candidate(c) {
            best = best.max(Some((c.term, c.seq, Reverse(node))));
        }
    }
    match (local.primary, conflict) {
        _ if newest > local.term && local.primary => Settle::Demote { term: newest },
        (true, Some(node)) => Settle::Conflict { node },
        (true, None) => Settle::Lift,
        (false, _) => {
            let headless = newest_primary != Some(newest);
            let elected = best.map(|(_, _, Reverse(node))| node);
            match elect {
                Some(me) if headless && elected == Some(me) => Settle::Promote,
                _ => Settle::Lift,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn copy(name: &str, incarnation: u64, term: u32, primary: bool) -> CopyState {
        CopyState {
            name: name.as_bytes().to_vec(),
            incarnation,
            term,
            primary,
            seq: u64::from(term) * 100,
            diverged: false,
        }
    }

    fn replica(term: u32, seq: u64) -> CopyState {
        CopyState {
            seq,
            ..copy("a", 1, term, false)
        }
    }

    const TO: Answering = Answering { to: 2, to_seq: 4 };

    #[test]
    fn hellos_and_reports_round_trip_and_damage_is_refused() {
        for listen in ["10.0.0.1:7400", "[fe80::1]:9"] {
            let h = Hello {
                node: 7,
                seq: 5,
                request: true,
                listen: listen.parse().unwrap(),
            };
            let b = encode_hello(&h);
            assert_eq!(decode(&b), Ok(ClusterMessage::Hello(h)));
            for i in 0..b.len() {
                let mut d = b.clone();
                d[i] ^= 0x10;
                assert!(decode(&d).is_err(), "byte {i} damaged, still accepted");
            }
            assert_eq!(decode(&b[..b.len() - 1]), Err(ClusterDecodeError::Checksum));
        }
        let copies: Vec<CopyState> = (0..250)
            .map(|i| CopyState {
                seq: i * 1_000_003,
                diverged: i % 3 == 0,
                ..copy(&format!("safCkpt=c{i}"), i, i as u32, i % 2 == 0)
            })
            .collect();
        let parts = encode_report(3, TO, &copies);
        assert_eq!(parts.len(), 3);
        let mut back = Vec::new();
        for (i, p) in parts.iter().enumerate() {
            assert!(p.len() <= MESSAGE_BYTES_MAX);
            let ClusterMessage::Report(r) = decode(p).unwrap() else {
                panic!("not a report")
            };
            assert_eq!(
                (r.node, r.to, r.to_seq, r.part, r.last, r.cut),
                (3, 2, 4, i as u16, i == 2, false)
            );
            back.extend(r.copies);
        }
        assert_eq!(back, copies);
        let empty = encode_report(3, TO, &[]);
        assert_eq!(
            decode(&empty[0]),
            Ok(ClusterMessage::Report(Report {
                node: 3,
                to: 2,
                to_seq: 4,
                part: 0,
                last: true,
                cut: false,
                copies: vec![]
            }))
        );
    }

    #[test]
    fn a_report_past_the_most_copies_says_it_is_cut() {
        let copies: Vec<CopyState> = (0..COPIES_MAX as u64 + 1)
            .map(|i| copy("c", i, 1, false))
            .collect();
        let parts = encode_report(3, TO, &copies);
        assert_eq!(parts.len(), COPIES_MAX / COPIES_PER_PART_MAX + 1);
        let ClusterMessage::Report(last) = decode(parts.last().unwrap()).unwrap() else {
            panic!("not a report")
        };
        assert!(last.cut && last.last);
    }

    #[test]
    fn a_field_out_of_range_is_refused_even_under_a_good_checksum() {
        let mut b = encode_hello(&Hello {
            node: 1,
            seq: 1,
            request: false,
            listen: "10.0.0.1:1".parse().unwrap(),
        });
        // Node id above the limit, checksum made right.
        b[6..10].copy_from_slice(&u32::MAX.to_le_bytes());
        let n = b.len() - 4;
        let crc = crc32c::crc32c(&b[..n]).to_le_bytes();
        b[n..].copy_from_slice(&crc);
        assert_eq!(decode(&b), Err(ClusterDecodeError::Field));
        assert_eq!(decode(b"CKPC"), Err(ClusterDecodeError::Length));
        assert_eq!(
            decode(&vec![0u8; MESSAGE_BYTES_MAX + 1]),
            Err(ClusterDecodeError::Length)
        );
    }

    #[test]
    fn a_fenced_primary_is_demoted_by_a_newer_term_lifted_otherwise() {
        let mine = copy("a", 1, 4, true);
        let newer = copy("a", 1, 5, false);
        let older = copy("a", 1, 3, false);
        let other_incarnation = copy("a", 2, 9, true);
        let other_name = copy("b", 1, 9, true);
        assert_eq!(settle(&mine, None, [(2, &older)]), Settle::Lift);
        assert_eq!(settle(&mine, None, []), Settle::Lift);
        assert_eq!(
            settle(&mine, None, [(2, &older), (3, &newer)]),
            Settle::Demote { term: 5 }
        );
        assert_eq!(
            settle(&mine, None, [(2, &other_incarnation), (3, &other_name)]),
            Settle::Lift
        );
        let twin = copy("a", 1, 4, true);
        assert_eq!(
            settle(&mine, None, [(2, &twin)]),
            Settle::Conflict { node: 2 }
        );
        // A fenced replica is always lifted: the fence only kept it from
        // being promoted while its partition had no quorum.
        let replica = copy("a", 1, 4, false);
        assert_eq!(
            settle(&replica, None, [(2, &newer), (3, &twin)]),
            Settle::Lift
        );
        // Electing too: a primary of the newest term is among the members.
        assert_eq!(
            settle(&replica, Some(1), [(2, &newer), (3, &twin)]),
            Settle::Lift
        );
    }

    #[test]
    fn a_headless_replica_is_promoted_on_the_one_node_that_holds_the_most() {
        let (me, behind, ahead) = (replica(2, 500), replica(2, 400), replica(2, 600));
        // The application chooses (collocated): never promoted here.
        assert_eq!(settle(&me, None, [(2, &behind)]), Settle::Lift);
        // Alone, or ahead of the others: promoted.
        assert_eq!(settle(&me, Some(1), []), Settle::Promote);
        assert_eq!(settle(&me, Some(1), [(2, &behind)]), Settle::Promote);
        // Another holds more, and each of them decides the same from what
        // it knows: node 3 promotes, nodes 1 and 2 do not.
        assert_eq!(
            settle(&me, Some(1), [(2, &behind), (3, &ahead)]),
            Settle::Lift
        );
        assert_eq!(
            settle(&behind, Some(2), [(1, &me), (3, &ahead)]),
            Settle::Lift
        );
        assert_eq!(
            settle(&ahead, Some(3), [(1, &me), (2, &behind)]),
            Settle::Promote
        );
        // A newer term beats more frames of an older one.
        let newer_term = replica(3, 10);
        assert_eq!(settle(&me, Some(1), [(2, &newer_term)]), Settle::Lift);
        assert_eq!(settle(&newer_term, Some(2), [(1, &me)]), Settle::Promote);
        // A tie goes to the lowest node id, on both sides.
        let twin = replica(2, 500);
        assert_eq!(settle(&me, Some(1), [(4, &twin)]), Settle::Promote);
        assert_eq!(settle(&twin, Some(4), [(1, &me)]), Settle::Lift);
        // A diverged copy holds nothing: it is no candidate, and it does
        // not stop another from being one.
        let diverged = CopyState {
            diverged: true,
            ..replica(2, 900)
        };
        assert_eq!(settle(&diverged, Some(1), [(2, &behind)]), Settle::Lift);
        assert_eq!(settle(&behind, Some(2), [(1, &diverged)]), Settle::Promote);
        // A primary of the newest term among the members: no election.
        let primary = copy("a", 1, 2, true);
        assert_eq!(settle(&ahead, Some(3), [(1, &primary)]), Settle::Lift);
        // A primary of an older term is demoted by its own settle: it does
        // not count as the checkpoint's primary, and it is no candidate.
        let old_primary = copy("a", 1, 1, true);
        assert_eq!(settle(&me, Some(1), [(2, &old_primary)]), Settle::Promote);
        assert_eq!(
            settle(&old_primary, Some(2), [(1, &me)]),
            Settle::Demote { term: 2 }
        );
        // Copies of other checkpoints, or of another incarnation, count for
        // nothing.
        let other = CopyState {
            incarnation: 9,
            ..replica(5, 9_999)
        };
        assert_eq!(settle(&me, Some(1), [(2, &other)]), Settle::Promote);
    }
}
