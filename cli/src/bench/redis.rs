//! The Redis baselines of `ckpt bench`, run when a `redis-server` binary is
//! on the PATH: a primary and one replica on loopback, started for the run
//! and stopped after it, driven by a minimal RESP client that speaks only
//! what the baselines need (SET, WAIT, and the replies to them).
//!
//! - SET + WAIT 1, one at a time: a write that returns once the replica
//!   holds it, Redis's counterpart of a `WR_ALL_REPLICAS` write.
//! - SETs pipelined in batches, each batch followed by WAIT 1: replicated
//!   throughput until the replica holds the batch, as our replicated rows
//!   measure it.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::Series;

/// How long the servers may take to start and the replica to sync.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one reply may take.
const REPLY_TIMEOUT: Duration = Duration::from_secs(5);
/// WAIT's own timeout, in ms (a reply of 0 replicas after it is an error).
const WAIT_MS: &[u8] = b"5000";

/// True if a `redis-server` binary is on the PATH.
pub fn installed() -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|d| d.join("redis-server").is_file()))
}

/// A Redis primary and its one replica, on loopback; stopped on drop.
pub struct Pair {
    servers: Vec<Child>,
    port: u16,
}

/// A port nobody listens on now (the server binds it a moment later).
fn free_port() -> Result<u16, String> {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(|e| format!("a free port: {e}"))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("a free port: {e}"))
}

fn server(dir: &Path, port: u16, name: &str, replica_of: Option<u16>) -> Result<Child, String> {
    let mut c = Command::new("redis-server");
    c.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
        .arg("--dir")
        .arg(dir)
        .args(["--dbfilename", &format!("{name}.rdb")])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some(p) = replica_of {
        c.args(["--replicaof", "127.0.0.1", &p.to_string()]);
    }
    c.spawn().map_err(|e| format!("redis-server: {e}"))
}

impl Pair {
    /// Starts both servers (their files in `dir`) and waits until the
    /// replica has synced.
    pub fn start(dir: &Path) -> Result<Pair, String> {
        let port = free_port()?;
        let mut pair = Pair {
            servers: vec![server(dir, port, "primary", None)?],
            port,
        };
        pair.servers
            .push(server(dir, free_port()?, "replica", Some(port))?);
        let deadline = Instant::now() + START_TIMEOUT;
        let mut client = loop {
            match Client::connect(port) {
                Ok(c) => break c,
                Err(e) if Instant::now() >= deadline => return Err(e),
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        };
        // WAIT 1 answers 1 once the replica is connected and acknowledges.
        loop {
            client.send(&[&[b"SET", b"ckpt-bench-ready", b"1"]])?;
            client.expect_ok()?;
            client.send(&[&[b"WAIT", b"1", b"100"]])?;
            if client.integer()? == 1 {
                return Ok(pair);
            }
            if Instant::now() >= deadline {
                return Err("the Redis replica did not sync in time".into());
            }
        }
    }

    /// A client of the primary.
    pub fn client(&self) -> Result<Client, String> {
        Client::connect(self.port)
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        for s in &mut self.servers {
            let _ = s.kill();
            let _ = s.wait();
        }
    }
}

/// A RESP client over one connection: commands out as arrays of bulk
/// strings, replies in parsed one at a time.
pub struct Client {
    stream: TcpStream,
    rx: Vec<u8>,
    at: usize,
    out: Vec<u8>,
}

/// The largest reply line accepted (the baselines' replies are tiny).
const LINE_MAX: usize = 4096;

impl Client {
    fn connect(port: u16) -> Result<Client, String> {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1))
            .map_err(|e| format!("redis connect: {e}"))?;
        stream
            .set_nodelay(true)
            .and_then(|()| stream.set_read_timeout(Some(REPLY_TIMEOUT)))
            .map_err(|e| format!("redis socket: {e}"))?;
        Ok(Client {
            stream,
            rx: Vec::new(),
            at: 0,
            out: Vec::new(),
        })
    }

    /// Sends `commands` in one write (a pipeline).
    pub fn send(&mut self, commands: &[&[&[u8]]]) -> Result<(), String> {
        self.out.clear();
        for args in commands {
            self.out
                .extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
            for a in *args {
                self.out
                    .extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
                self.out.extend_from_slice(a);
                self.out.extend_from_slice(b"\r\n");
            }
        }
        self.stream
            .write_all(&self.out)
            .map_err(|e| format!("redis send: {e}"))
    }

    /// The next reply line (its type byte first), without its CRLF.
    fn line(&mut self) -> Result<Vec<u8>, String> {
        loop {
            if let Some(end) = self.rx[self.at..].windows(2).position(|w| w == b"\r\n") {
                let line = self.rx[self.at..self.at + end].to_vec();
                self.at += end + 2;
                if self.at == self.rx.len() {
                    self.rx.clear();
                    self.at = 0;
                }
                return Ok(line);
            }
            if self.rx.len() - self.at > LINE_MAX {
                return Err("redis: a reply line too long".into());
            }
            let mut buf = [0u8; 4096];
            let n = self
                .stream
                .read(&mut buf)
                .map_err(|e| format!("redis reply: {e}"))?;
            if n == 0 {
                return Err("redis closed the connection".into());
            }
            self.rx.extend_from_slice(&buf[..n]);
        }
    }

    /// Reads a `+OK` reply.
    pub fn expect_ok(&mut self) -> Result<(), String> {
        let line = self.line()?;
        if line == b"+OK" {
            Ok(())
        } else {
            Err(format!("redis: {}", String::from_utf8_lossy(&line)))
        }
    }

    /// Reads an integer reply.
    pub fn integer(&mut self) -> Result<i64, String> {
        let line = self.line()?;
        match line.split_first() {
            Some((b':', n)) => std::str::from_utf8(n)
                .ok()
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| "redis: a malformed integer".into()),
            _ => Err(format!("redis: {}", String::from_utf8_lossy(&line))),
        }
    }

    /// One `WAIT 1` whose reply must say the replica holds everything.
    fn wait_replica(&mut self) -> Result<(), String> {
        match self.integer()? {
            1 => Ok(()),
            n => Err(format!(
                "redis WAIT 1 answered {n}: the replica fell behind"
            )),
        }
    }
}

/// `writes` of SET (a `size`-byte value) + WAIT 1, one at a time: the time
/// of each (after 20 unrecorded).
pub fn set_wait(client: &mut Client, size: usize, writes: u32) -> Result<Series, String> {
    let value = vec![0x5Au8; size];
    let mut s = Series::default();
    for i in 0..writes + 20 {
        let start = Instant::now();
        client.send(&[&[b"SET", b"ckpt-bench", &value], &[b"WAIT", b"1", WAIT_MS]])?;
        client.expect_ok()?;
        client.wait_replica()?;
        let took = start.elapsed().as_nanos() as f64;
        if i >= 20 {
            s.record(took, 1, took);
        }
    }
    Ok(s)
}

/// `batches` batches of `batch` SETs (a `size`-byte value, 16 keys round
/// robin) pipelined, each followed by WAIT 1: per-SET time of each batch
/// (after 3 unrecorded).
pub fn pipelined_sets(
    client: &mut Client,
    size: usize,
    batch: u32,
    batches: u32,
) -> Result<Series, String> {
    let value = vec![0x5Au8; size];
    let keys: Vec<Vec<u8>> = (0..16).map(|k| format!("s{k}").into_bytes()).collect();
    let mut commands: Vec<[&[u8]; 3]> = Vec::new();
    for i in 0..batch as usize {
        commands.push([b"SET", &keys[i % 16], &value]);
    }
    let mut all: Vec<&[&[u8]]> = commands.iter().map(|c| &c[..]).collect();
    let wait: [&[u8]; 3] = [b"WAIT", b"1", WAIT_MS];
    all.push(&wait);
    let mut s = Series::default();
    for i in 0..batches + 3 {
        let start = Instant::now();
        client.send(&all)?;
        for _ in 0..batch {
            client.expect_ok()?;
        }
        client.wait_replica()?;
        let per = start.elapsed().as_nanos() as f64 / f64::from(batch);
        if i >= 3 {
            s.record_batch(per, batch);
        }
    }
    Ok(s)
}
