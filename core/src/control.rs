//! The node daemon's control requests as bytes: one line per request on
//! its Unix socket (the socket itself, the answers and the client are
//! `ckpt::control`'s). Parsed here, without I/O, so that the parser of
//! these untrusted bytes is fuzzed (`fuzz/fuzz_targets/control_request.rs`).
//!
//! | request | line |
//! |---|---|
//! | [`Request::Status`] | `status` |
//! | [`Request::Want`] | `want <the name's bytes in lowercase hex> <wait in ms>`, then ` existing` for an open without `CREATE` |
//! | [`Request::Unlink`] | `unlink <the name's bytes in lowercase hex> <wait in ms>` |
//! | [`Request::Forward`] | `forward <the name's bytes in lowercase hex> <wait in ms> <bytes>`, then that many bytes: a change ([`crate::frame::ForwardRequest`]) |

use core::time::Duration;

use crate::name::{CheckpointName, CHECKPOINT_NAME_BYTES_MAX};

/// The longest request line: a `want` or `unlink` of the longest name.
pub const REQUEST_BYTES_MAX: usize = 2 * CHECKPOINT_NAME_BYTES_MAX + 64;

/// The longest wait a `want` may ask for.
pub const WANT_WAIT_MAX: Duration = Duration::from_secs(3600);

/// A request on the control socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// The daemon's status.
    Status,
    /// A process of this host opens `name`: a replica is wanted here, within
    /// `wait`.
    Want {
        /// The checkpoint.
        name: CheckpointName,
        /// How long the asker waits.
        wait: Duration,
        /// The asker opens without `CREATE`: it wants a checkpoint that
        /// exists somewhere, so the daemon waits a moment for a first offer
        /// of it (a peer may have created it just now) before it says that
        /// none is known. An opener that would create it is told at once.
        existing: bool,
    },
    /// A process of this host unlinks `name`, of which this host holds no
    /// copy or only a replica: the daemon asks the primary's node to unlink
    /// it, within `wait`.
    Unlink {
        /// The checkpoint.
        name: CheckpointName,
        /// How long the asker waits.
        wait: Duration,
    },
    /// A process of this host changes `name`, of which this host holds a
    /// replica: the daemon has the primary make the change, within `wait`.
    /// The change's `bytes` bytes follow the line.
    Forward {
        /// The checkpoint.
        name: CheckpointName,
        /// How long the asker waits.
        wait: Duration,
        /// The length of the change that follows the line (at most
        /// [`FORWARD_BYTES_MAX`]).
        bytes: usize,
    },
}

/// The longest change a `forward` request carries.
pub const FORWARD_BYTES_MAX: usize = 32 << 20;

impl Request {
    /// Parses one request line (untrusted bytes; trailing whitespace
    /// ignored). `Err` says what is wrong, for the answer.
    pub fn parse(line: &[u8]) -> Result<Request, String> {
        let line = std::str::from_utf8(line)
            .map_err(|_| "the request is not UTF-8".to_string())?
            .trim_end();
        let mut words = line.split(' ');
        match (
            words.next(),
            words.next(),
            words.next(),
            words.next(),
            words.next(),
        ) {
            (Some("status"), None, None, None, None) => Ok(Request::Status),
            (Some(verb @ ("want" | "unlink" | "forward")), Some(hex), Some(ms), last, None) => {
                let (existing, bytes) = match (verb, last) {
                    ("forward", Some(n)) => {
                        let n: usize = n
                            .parse()
                            .map_err(|_| "forward: the length is not a number".to_string())?;
                        if n == 0 || n > FORWARD_BYTES_MAX {
                            return Err(format!(
                                "forward: a change of 1 to {FORWARD_BYTES_MAX} bytes"
                            ));
                        }
                        (false, n)
                    }
                    ("forward", None) => return Err("forward: the length is missing".into()),
                    (_, None) => (false, 0),
                    ("want", Some("existing")) => (true, 0),
                    _ => return Err(format!("{verb}: unexpected words after the wait")),
                };
                let named = unhex(hex, CHECKPOINT_NAME_BYTES_MAX)
                    .ok_or(format!("{verb}: the name is not hex"))?;
                let name = CheckpointName::new(named).map_err(|e| format!("{verb}: {e}"))?;
                let ms: u64 = ms
                    .parse()
                    .map_err(|_| format!("{verb}: the wait is not a number"))?;
                let wait = Duration::from_millis(ms);
                if wait > WANT_WAIT_MAX {
                    return Err(format!("{verb}: a wait of at most {WANT_WAIT_MAX:?}"));
                }
                Ok(match verb {
                    "want" => Request::Want {
                        name,
                        wait,
                        existing,
                    },
                    "forward" => Request::Forward { name, wait, bytes },
                    _ => Request::Unlink { name, wait },
                })
            }
            _ => Err(format!(
                "unknown request {:?}: expected `status`, `want <name in hex> <ms> [existing]`, \
                 `unlink <name in hex> <ms>` or `forward <name in hex> <ms> <bytes>`",
                line.chars().take(64).collect::<String>()
            )),
        }
    }

    /// The request as one line, newline included.
    pub fn line(&self) -> String {
        match self {
            Request::Status => "status\n".into(),
            Request::Want { name, wait, .. }
            | Request::Unlink { name, wait }
            | Request::Forward { name, wait, .. } => {
                let verb = match self {
                    Request::Want { .. } => "want",
                    Request::Forward { .. } => "forward",
                    _ => "unlink",
                };
                let mut s = String::with_capacity(name.as_bytes().len() * 2 + 40);
                s.push_str(verb);
                s.push(' ');
                s.push_str(&hex(name.as_bytes()));
                s.push_str(&format!(" {}", wait.as_millis()));
                match self {
                    Request::Want { existing: true, .. } => s.push_str(" existing"),
                    Request::Forward { bytes, .. } => s.push_str(&format!(" {bytes}")),
                    _ => {}
                }
                s.push('\n');
                s
            }
        }
    }
}

/// `bytes` in lowercase hex, two digits a byte (names and ids in the
/// control socket's lines).
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The bytes `s` spells in hex ([`hex`]), if it spells at most `max_bytes`
/// (untrusted text: anything else is `None`).
pub fn unhex(s: &str, max_bytes: usize) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 || s.len() > 2 * max_bytes || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_and_bad_ones_are_refused() {
        let name = CheckpointName::new(b"safCkpt=a b\xff").unwrap();
        for existing in [false, true] {
            let want = Request::Want {
                name: name.clone(),
                wait: Duration::from_millis(1500),
                existing,
            };
            let line = want.line();
            assert!(line.starts_with("want 7361664"), "{line}");
            assert_eq!(line.ends_with(" existing\n"), existing, "{line}");
            assert_eq!(Request::parse(line.as_bytes()), Ok(want));
        }
        let unlink = Request::Unlink {
            name: CheckpointName::new(b"safCkpt=u").unwrap(),
            wait: Duration::from_millis(20),
        };
        let line = unlink.line();
        assert_eq!(line, "unlink 736166436b70743d75 20\n");
        assert_eq!(Request::parse(line.as_bytes()), Ok(unlink));
        assert!(Request::parse(b"unlink 61").is_err());
        let forward = Request::Forward {
            name: CheckpointName::new(b"safCkpt=f").unwrap(),
            wait: Duration::from_millis(30),
            bytes: 40,
        };
        let line = forward.line();
        assert_eq!(line, "forward 736166436b70743d66 30 40\n");
        assert_eq!(Request::parse(line.as_bytes()), Ok(forward));
        assert_eq!(Request::parse(b"status\n"), Ok(Request::Status));
        for bad in [
            &b"want 7\n"[..],
            b"want 7g 10",
            b"want 00 10",
            b"want  10",
            b"want 61 -1",
            b"want 61 99999999999",
            b"want 61 10 extra",
            b"want 61 10 existing existing",
            b"unlink 61 10 existing",
            b"forward 61 10",
            b"forward 61 10 0",
            b"forward 61 10 -3",
            b"forward 61 10 99999999999",
            b"forward 61 10 existing",
            b"want 61 10 40",
            b"want +a 10",
            b"\xff",
            b"stat",
        ] {
            assert!(
                Request::parse(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
