//! The node daemon's control socket: its name, its answers, and the client
//! side of the one request applications make (the requests' format is
//! [`ckpt_core::control`]'s).
//!
//! The socket (`.ckptd.sock` in the segment directory, by default) takes one
//! request line per connection:
//!
//! | request | answer |
//! |---|---|
//! | `status` | the daemon's [`crate::node::NodeStatus`] as one JSON line |
//! | `want <name in hex> <wait in ms>` | `want here`, `want arrived`, `want unknown` or `want timeout` ([`Wanted`]) |
//! | `unlink <name in hex> <wait in ms>` | `unlink <the SA error code of the primary's unlink>`, `unlink unknown` or `unlink timeout` ([`Unlinked`]) |
//! | `forward <name in hex> <wait in ms> <bytes>` and the change's bytes | `forward <result> <index> <seq> <generated id in hex, or ->`, `forward unknown` or `forward timeout` ([`Forwarded`]) |
//!
//! A daemon serving too many connections at once answers [`BUSY_ANSWER`]
//! to any request; one that does not know a request answers a JSON error.
//!
//! `want` is what [`crate::Service::open`] asks when the checkpoint it opens
//! is not on this host: the daemon makes a replica come here if a peer
//! holds the checkpoint ([`crate::node::NodeHandle::want`]). `unlink` is
//! what [`crate::Service::unlink`] asks when this host holds no copy of the
//! checkpoint, or only a replica: the daemon has the primary's node unlink
//! it ([`crate::node::NodeHandle::unlink`]). `forward` is what a
//! [`crate::Checkpoint`]'s changes ask where this host holds a replica: the
//! daemon has the primary make the change ([`crate::forward`]).

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

pub use ckpt_core::control::{Request, FORWARD_BYTES_MAX, REQUEST_BYTES_MAX, WANT_WAIT_MAX};
use ckpt_core::CheckpointName;

pub use crate::forward::Forwarded;
pub use crate::node::{Unlinked, Wanted};

/// The control socket's name in the segment directory, by default (where
/// applications look for it).
pub const CONTROL_NAME: &str = ".ckptd.sock";

/// The control socket in segment directory `dir`, if one is there (a node
/// daemon serves the directory).
pub fn socket(dir: &Path) -> Option<std::path::PathBuf> {
    let path = dir.join(CONTROL_NAME);
    std::fs::symlink_metadata(&path).ok().map(|_| path)
}

/// What a daemon answers when it serves too many connections at once.
pub const BUSY_ANSWER: &str = "busy\n";

/// The answer line to a `want`, newline included.
pub fn want_answer(w: Wanted) -> String {
    format!("want {}\n", w.as_str())
}

/// Asks the daemon answering on the control socket in `dir` for a replica of
/// `name` on this host, waiting up to `wait` (and a few seconds more for
/// the daemon to take the request and answer); `existing` for an open
/// without `CREATE` (the daemon waits a moment for a first offer). `None`: no daemon answers
/// there, or it does not know the request (an older one): the caller goes
/// on as if there were none. A daemon that took the request and then failed
/// to answer, or is busy, is [`Wanted::TimedOut`]: it may be bringing the
/// replica, so the caller must not create the checkpoint here.
pub fn ask_want(
    dir: &Path,
    name: &CheckpointName,
    wait: Duration,
    existing: bool,
) -> Option<Wanted> {
    let request = Request::Want {
        name: name.clone(),
        wait: wait.min(WANT_WAIT_MAX),
        existing,
    };
    ask(dir, &request, "want ", Wanted::parse, Wanted::TimedOut)
}

/// The answer line to an `unlink`, newline included.
pub fn unlink_answer(u: Unlinked) -> String {
    format!("unlink {}\n", u.to_text())
}

/// Asks the daemon answering on the control socket in `dir` to have the
/// primary's node unlink `name` ([`crate::node::NodeHandle::unlink`]),
/// waiting up to `wait` (and a few seconds more). `None`: no daemon answers
/// there, or it does not know the request. A daemon that took the request
/// and failed to answer, or is busy, is [`Unlinked::TimedOut`].
pub fn ask_unlink(dir: &Path, name: &CheckpointName, wait: Duration) -> Option<Unlinked> {
    let request = Request::Unlink {
        name: name.clone(),
        wait: wait.min(WANT_WAIT_MAX),
    };
    ask(
        dir,
        &request,
        "unlink ",
        Unlinked::parse,
        Unlinked::TimedOut,
    )
}

/// The answer line to a `forward`, newline included.
pub fn forward_answer(f: &Forwarded) -> String {
    match f {
        Forwarded::Unknown => "forward unknown\n".into(),
        Forwarded::TimedOut => "forward timeout\n".into(),
        Forwarded::Answered(r) => {
            let id = if r.id.is_empty() {
                "-".to_string()
            } else {
                ckpt_core::control::hex(&r.id)
            };
            format!("forward {} {} {} {id}\n", r.result, r.index, r.seq)
        }
    }
}

/// A `forward` answer's words after `forward `.
fn parse_forwarded(s: &str) -> Option<Forwarded> {
    match s {
        "unknown" => return Some(Forwarded::Unknown),
        "timeout" => return Some(Forwarded::TimedOut),
        _ => {}
    }
    let mut w = s.split(' ');
    let (result, index, seq, id) = (w.next()?, w.next()?, w.next()?, w.next()?);
    if w.next().is_some() {
        return None;
    }
    let id = match id {
        "-" => Vec::new(),
        hex => ckpt_core::control::unhex(hex, ckpt_core::frame::WIRE_NAME_BYTES_MAX)?,
    };
    Some(Forwarded::Answered(crate::forward::Reply {
        result: result.parse().ok()?,
        index: index.parse().ok()?,
        seq: seq.parse().ok()?,
        id,
    }))
}

/// Asks the daemon answering on the control socket in `dir` to have the
/// primary make the change `request` (a
/// [`ckpt_core::frame::ForwardRequest`]'s bytes) to `name`, of which this
/// host holds a replica, waiting up to `wait` (and a few seconds more).
/// `None`: no daemon answers there, or it does not know the request. A
/// daemon that took the request and failed to answer, or is busy, is
/// [`Forwarded::TimedOut`].
pub fn ask_forward(
    dir: &Path,
    name: &CheckpointName,
    request: &[u8],
    wait: Duration,
) -> Option<Forwarded> {
    let line = Request::Forward {
        name: name.clone(),
        wait: wait.min(WANT_WAIT_MAX),
        bytes: request.len(),
    };
    // A busy daemon took nothing: the caller may retry.
    let busy = Forwarded::Answered(crate::forward::untried(crate::forward::RESULT_BUSY));
    let answers = (parse_forwarded as fn(&str) -> Option<Forwarded>, busy);
    ask_with(
        dir,
        &line,
        request,
        "forward ",
        answers,
        Forwarded::TimedOut,
    )
}

/// Sends `request` to the daemon in `dir` and reads its answer line, which
/// begins with `prefix` and ends with what `parse` reads; `late` when the
/// daemon took the request and did not answer it (in time, or at all).
fn ask<A: Clone>(
    dir: &Path,
    request: &Request,
    prefix: &str,
    parse: fn(&str) -> Option<A>,
    late: A,
) -> Option<A> {
    ask_with(dir, request, &[], prefix, (parse, late.clone()), late)
}

/// [`ask`], with `payload` sent right after the request line, and what a
/// busy daemon's answer means (`answers`: the parser, and the busy answer).
fn ask_with<A>(
    dir: &Path,
    request: &Request,
    payload: &[u8],
    prefix: &str,
    answers: (fn(&str) -> Option<A>, A),
    late: A,
) -> Option<A> {
    let (parse, busy) = answers;
    // No daemon for this directory: nothing to ask (no connect attempt).
    let path = socket(dir)?;
    let mut stream = UnixStream::connect(&path).ok()?;
    let wait = match request {
        Request::Want { wait, .. }
        | Request::Unlink { wait, .. }
        | Request::Forward { wait, .. } => *wait,
        Request::Status => Duration::ZERO,
    };
    let sent = stream
        .set_write_timeout(Some(ANSWER_SLACK))
        .and_then(|()| stream.set_read_timeout(Some(wait + ANSWER_SLACK)))
        .and_then(|()| stream.write_all(request.line().as_bytes()))
        .and_then(|()| stream.write_all(payload));
    if sent.is_err() {
        return Some(late);
    }
    let mut line = String::new();
    // An answer is a short line: read no more than that.
    if BufReader::new(stream.take(256))
        .read_line(&mut line)
        .is_err()
        || line.is_empty()
    {
        return Some(late);
    }
    let line = line.trim_end();
    if line == BUSY_ANSWER.trim_end() {
        return Some(busy);
    }
    match line.strip_prefix(prefix).map(parse) {
        Some(Some(a)) => Some(a),
        Some(None) => Some(late),
        // Not an answer to this request (an error: a daemon that does not
        // know it).
        None => None,
    }
}

/// How much longer than the wait a `want` may take: the daemon reads the
/// request (at most 2 s) and answers.
const ANSWER_SLACK: Duration = Duration::from_secs(3);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forward_answers_round_trip() {
        use crate::forward::Reply;
        for f in [
            Forwarded::Unknown,
            Forwarded::TimedOut,
            Forwarded::Answered(Reply {
                result: 0,
                index: 0,
                seq: 42,
                id: Vec::new(),
            }),
            Forwarded::Answered(Reply {
                result: 3,
                index: 7,
                seq: 0,
                id: vec![0, 1, 0xff],
            }),
        ] {
            let a = forward_answer(&f);
            let words = a.trim_end().strip_prefix("forward ").unwrap();
            assert_eq!(parse_forwarded(words), Some(f));
        }
        for bad in ["", "1 2 3", "1 2 3 - x", "x 0 0 -", "0 0 0 abc", "0 0 0 zz"] {
            assert_eq!(parse_forwarded(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn want_answers_round_trip() {
        for w in [
            Wanted::Here,
            Wanted::Arrived,
            Wanted::Unknown,
            Wanted::TimedOut,
        ] {
            let a = want_answer(w);
            assert_eq!(
                Wanted::parse(a.trim_end().strip_prefix("want ").unwrap()),
                Some(w)
            );
        }
    }

    #[test]
    fn no_daemon_is_no_answer() {
        let d = tempfile::tempdir().unwrap();
        let name = CheckpointName::new(b"x").unwrap();
        assert_eq!(
            ask_want(d.path(), &name, Duration::from_secs(1), false),
            None
        );
        // A socket nobody answers on.
        std::fs::write(d.path().join(CONTROL_NAME), b"").unwrap();
        assert_eq!(
            ask_want(d.path(), &name, Duration::from_secs(1), false),
            None
        );
    }

    #[test]
    fn a_daemon_that_took_the_request_and_did_not_answer_is_a_timeout_an_old_one_is_none() {
        use std::os::unix::net::UnixListener;
        let d = tempfile::tempdir().unwrap();
        let name = CheckpointName::new(b"x").unwrap();
        for (answer, expected) in [
            (&b""[..], Some(Wanted::TimedOut)),
            (BUSY_ANSWER.as_bytes(), Some(Wanted::TimedOut)),
            (b"want nonsense\n", Some(Wanted::TimedOut)),
            (b"{\"error\":\"unknown request\"}\n", None),
            (b"want arrived\n", Some(Wanted::Arrived)),
        ] {
            let path = d.path().join(CONTROL_NAME);
            let _ = std::fs::remove_file(&path);
            let listener = UnixListener::bind(&path).unwrap();
            let server = std::thread::spawn(move || {
                let (mut s, _) = listener.accept().unwrap();
                let mut line = String::new();
                BufReader::new(&s).read_line(&mut line).unwrap();
                assert!(line.starts_with("want 78 "), "{line}");
                s.write_all(answer).unwrap();
            });
            assert_eq!(
                ask_want(d.path(), &name, Duration::from_secs(1), false),
                expected,
                "{:?}",
                String::from_utf8_lossy(answer)
            );
            server.join().unwrap();
        }
    }
}
