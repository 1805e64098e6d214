//! What the crash tests share: their seed, their random numbers, the
//! child process they start and kill, and the checkpoint of the writers they
//! kill.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use ckpt::{Config, CreationAttributes, CreationFlags, UpdateMode};

/// The checkpoint a killed writer writes: `sections` sections of at most
/// 256 bytes (ids of at most 8), asynchronous, kept a minute.
#[allow(dead_code)] // Not every crash test uses it.
pub fn small_attrs(sections: u32) -> CreationAttributes {
    CreationAttributes {
        flags: CreationFlags::new(UpdateMode::ActiveReplica, false),
        checkpoint_bytes: sections as u64 * 256,
        retention_ns: 60 * 1_000_000_000,
        sections_max: sections,
        section_bytes_max: 256,
        section_id_bytes_max: 8,
    }
}

/// The service's configuration over `dir`: a 64 MiB ring, so that the log
/// holds every frame of a run for the replay that checks it.
#[allow(dead_code)] // Not every crash test uses it.
pub fn big_ring(dir: &std::path::Path) -> Config {
    Config {
        log_bytes: Some(64 << 20),
        ..Config::with_dir(dir)
    }
}

/// The environment variable that replays a crash test's run.
pub const ENV_SEED: &str = "CKPT_CRASH_SEED";

/// The run's seed: `CKPT_CRASH_SEED`, else the clock. Printed with the
/// test's name so that a failure can be replayed.
pub fn seed(test: &str) -> u64 {
    let seed = std::env::var(ENV_SEED)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    println!("{test} seed: {seed} (rerun with {ENV_SEED}={seed})");
    seed
}

/// xorshift64*: deterministic from the seed, no dependency.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// Runs the test binary's own test `child` (which prints "ready" once set
/// up) with `envs`, lets it work for `after`, and SIGKILLs it. Panics with
/// `what` if it never gets ready.
pub fn kill_after(child: &str, envs: &[(&str, String)], after: Duration, what: &str) {
    let exe = std::env::current_exe().unwrap();
    let mut process = Command::new(exe)
        .args([child, "--exact", "--nocapture", "--test-threads=1"])
        .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(process.stdout.take().unwrap()).lines();
    assert!(
        lines.any(|l| l.is_ok_and(|l| l.trim_end().ends_with("ready"))),
        "{what}"
    );
    std::thread::sleep(after);
    process.kill().unwrap();
    process.wait().unwrap();
}
