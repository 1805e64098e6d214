//! Encrypted links: a [`Connection`] whose every message travels sealed
//! (ChaCha20-Poly1305, the format in `ckpt_core::frame::seal_header`), under
//! session keys both ends derive from the cluster key and the challenges of
//! their authentication ([`SessionKeys`]). One key per direction, a nonce
//! per message (its number in the direction, checked in order at the
//! receiver: a message dropped, replayed or reordered fails the link).
//!
//! Sealing costs one copy and one pass of the cipher per message each way:
//! the bench's "replicated ... encrypted" row shows it beside the plain link.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce, Tag};
use ckpt_core::frame::{open_sealed, seal_header, MESSAGE_HEADER_BYTES, SEAL_TAG_BYTES};
use ckpt_transport::Connection;

/// The two keys of an encrypted link, as one end sees them.
#[derive(Clone)]
pub struct SessionKeys {
    /// For what this end sends.
    pub send: [u8; 32],
    /// For what this end receives.
    pub receive: [u8; 32],
}

impl std::fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the bytes.
        f.write_str("SessionKeys")
    }
}

/// A link's connection: plain until [`Wire::seal`], every message sealed
/// after. The link runs on it from its first message (authentication
/// included), so nothing read ahead is ever left on another handle. Its
/// sends stop waiting for the peer once the flag given to
/// [`Wire::cancel_sends_on`] is set (the link's stop).
pub struct Wire<'s, C> {
    inner: C,
    sealing: Option<Box<Sealing>>,
    max_message: usize,
    cancel: Option<&'s AtomicBool>,
}

/// An encrypted link's state (each handle's own: one sends, the other
/// receives).
struct Sealing {
    send_key: ChaCha20Poly1305,
    receive_key: ChaCha20Poly1305,
    keys: SessionKeys,
    sent: u64,
    received: u64,
    /// The messages being sealed, then their ciphertext.
    out: Vec<u8>,
    /// The last message opened.
    opened: Vec<u8>,
}

impl Sealing {
    fn new(keys: SessionKeys) -> Sealing {
        Sealing {
            send_key: ChaCha20Poly1305::new(Key::from_slice(&keys.send)),
            receive_key: ChaCha20Poly1305::new(Key::from_slice(&keys.receive)),
            keys,
            sent: 0,
            received: 0,
            out: Vec::new(),
            opened: Vec::new(),
        }
    }
}

fn nonce(counter: u64) -> Nonce {
    let mut n = [0u8; 12];
    n[..8].copy_from_slice(&counter.to_le_bytes());
    Nonce::from(n)
}

fn invalid(why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why.to_string())
}

impl<'s, C: Connection> Wire<'s, C> {
    /// `inner`, plain; sealed messages received are at most `max_message`
    /// bytes.
    pub fn plain(inner: C, max_message: usize) -> Wire<'s, C> {
        Wire {
            inner,
            sealing: None,
            max_message,
            cancel: None,
        }
    }

    /// From now on a send that waits for the peer gives up once `flag` is
    /// set (`ConnectionAborted`), on this handle and its clones.
    pub fn cancel_sends_on(&mut self, flag: &'s AtomicBool) {
        self.cancel = Some(flag);
    }

    /// From now on every message is sealed with `keys`, both ways.
    pub fn seal(&mut self, keys: SessionKeys) {
        self.sealing = Some(Box::new(Sealing::new(keys)));
    }
}

impl<C: Connection> Connection for Wire<'_, C> {
    fn send_within(
        &mut self,
        parts: &[&[u8]],
        limit: Duration,
        cancel: Option<&AtomicBool>,
    ) -> io::Result<()> {
        let cancel = cancel.or(self.cancel);
        let Some(s) = self.sealing.as_deref_mut() else {
            return self.inner.send_within(parts, limit, cancel);
        };
        // The whole messages of `parts`, gathered into one buffer (reused:
        // no allocation once it is large enough), each sealed in place and
        // sent with its header and tag.
        s.out.clear();
        for p in parts {
            s.out.extend_from_slice(p);
        }
        let mut at = 0;
        while at < s.out.len() {
            let bytes = ckpt_core::frame::message_bytes(&s.out[at..])
                .filter(|&n| n >= MESSAGE_HEADER_BYTES && at + n <= s.out.len())
                .ok_or_else(|| invalid("a part that is not whole messages"))?;
            let header = seal_header(0, s.sent, bytes)
                .map_err(|_| invalid("a message too large to seal"))?;
            let body = &mut s.out[at..at + bytes];
            let tag = s
                .send_key
                .encrypt_in_place_detached(&nonce(s.sent), &header[8..], body)
                .map_err(|_| invalid("sealing failed"))?;
            s.sent += 1;
            self.inner
                .send_within(&[&header, body, tag.as_slice()], limit, cancel)?;
            at += bytes;
        }
        Ok(())
    }

    fn recv(&mut self, timeout: Duration) -> io::Result<Option<&[u8]>> {
        let Some(s) = self.sealing.as_deref_mut() else {
            return self.inner.recv(timeout);
        };
        let Some(bytes) = self.inner.recv(timeout)? else {
            return Ok(None);
        };
        if bytes.get(8) != Some(&ckpt_core::frame::SEALED_KIND) {
            return Err(invalid(
                "the peer does not encrypt its links (encryption must be on at both ends)",
            ));
        }
        let parts = open_sealed(bytes, self.max_message)
            .map_err(|e| invalid(&format!("bad sealed message: {e}")))?;
        if parts.counter != s.received {
            return Err(invalid("a sealed message out of order (replayed or lost)"));
        }
        s.opened.clear();
        s.opened.extend_from_slice(parts.ciphertext);
        let tag = Tag::from_slice(parts.tag);
        s.receive_key
            .decrypt_in_place_detached(&nonce(parts.counter), parts.aad, &mut s.opened, tag)
            .map_err(|_| invalid("a sealed message failed authentication"))?;
        s.received += 1;
        Ok(Some(&s.opened))
    }

    fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.inner.peer_addr()
    }

    fn shutdown(&self) -> io::Result<()> {
        self.inner.shutdown()
    }

    fn set_max_message(&mut self, max_message: usize) {
        // A sealed message is the inner one plus the envelope.
        self.max_message = max_message.saturating_add(SEAL_OVERHEAD);
        self.inner.set_max_message(self.max_message);
    }

    fn try_clone(&self) -> io::Result<Self> {
        // The clone sends or receives, never both with this one: its
        // counters start where this one's are.
        let sealing = self.sealing.as_ref().map(|s| {
            let mut c = Sealing::new(s.keys.clone());
            c.sent = s.sent;
            c.received = s.received;
            Box::new(c)
        });
        Ok(Wire {
            inner: self.inner.try_clone()?,
            sealing,
            max_message: self.max_message,
            cancel: self.cancel,
        })
    }
}

/// Bytes a sealed message adds to the one inside.
pub const SEAL_OVERHEAD: usize = MESSAGE_HEADER_BYTES + SEAL_TAG_BYTES;

#[cfg(test)]
mod tests {
    use super::*;
    use ckpt_transport::tcp::Tcp;
    use ckpt_transport::{Backend, Listener};

    const LIMIT: usize = 1 << 20;

    fn pair() -> (impl Connection, impl Connection) {
        let l = Tcp.listen("127.0.0.1:0".parse().unwrap(), LIMIT).unwrap();
        let addr = l.local_addr().unwrap();
        let a = Tcp.connect(addr, Duration::from_secs(5), LIMIT).unwrap();
        let (b, _) = l.accept(Duration::from_secs(5)).unwrap().unwrap();
        (a, b)
    }

    fn keys(flip: bool) -> SessionKeys {
        let (x, y) = ([1u8; 32], [2u8; 32]);
        if flip {
            SessionKeys {
                send: y,
                receive: x,
            }
        } else {
            SessionKeys {
                send: x,
                receive: y,
            }
        }
    }

    /// A whole message of `bytes` bytes carrying `marker`.
    fn message(bytes: usize, marker: &[u8]) -> Vec<u8> {
        let mut m = vec![0u8; bytes];
        m[..4].copy_from_slice(&(bytes as u32).to_le_bytes());
        m[40..40 + marker.len()].copy_from_slice(marker);
        m
    }

    const WAIT: Duration = Duration::from_secs(5);

    #[test]
    fn sealed_messages_hide_their_bytes_and_refuse_tampering_and_replays() {
        let secret = b"the checkpoint's secret bytes";
        let m = message(128, secret);
        // What a sealed end sends is not the message.
        let (a, mut raw) = pair();
        let mut sender = Wire::plain(a, LIMIT);
        sender.seal(keys(false));
        sender.send(&[&m[..64], &m[64..]]).unwrap();
        let on_wire = raw.recv(WAIT).unwrap().unwrap().to_vec();
        assert_eq!(on_wire[8], ckpt_core::frame::SEALED_KIND);
        assert_eq!(on_wire.len(), m.len() + SEAL_OVERHEAD);
        assert!(!on_wire.windows(secret.len()).any(|w| w == secret));
        // The other end, sealed with the mirrored keys, opens it.
        let (c, d) = pair();
        let (mut feed, mut receiver) = (c, Wire::plain(d, LIMIT));
        receiver.seal(keys(true));
        feed.send(&[&on_wire]).unwrap();
        assert_eq!(receiver.recv(WAIT).unwrap().unwrap(), &m[..]);
        // The same message again (a replay) is refused.
        feed.send(&[&on_wire]).unwrap();
        assert!(receiver.recv(WAIT).is_err());
        // A flipped bit anywhere in the body is refused.
        let (c, d) = pair();
        let (mut feed, mut receiver) = (c, Wire::plain(d, LIMIT));
        receiver.seal(keys(true));
        let mut bad = on_wire.clone();
        bad[60] ^= 1;
        feed.send(&[&bad]).unwrap();
        let e = receiver.recv(WAIT).unwrap_err();
        assert!(e.to_string().contains("authentication"), "{e}");
        // So is a plain message on a sealed link.
        let (c, d) = pair();
        let (mut feed, mut receiver) = (c, Wire::plain(d, LIMIT));
        receiver.seal(keys(true));
        feed.send(&[&m]).unwrap();
        let e = receiver.recv(WAIT).unwrap_err();
        assert!(e.to_string().contains("does not encrypt"), "{e}");
    }
}
